"""Counters: `bedside stats` over the control socket and the health topic (issue #15 item 6)."""

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.control import ControlError, request
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from appliance.stats import LatencyHistogram, RateWindow
from rules.outputs import MemoryOutput
from tests.appliance.test_gateway import Streams, config, wait_for


def test_histogram_buckets_and_quantile_bounds():
    h = LatencyHistogram((1.0, 2.0, 5.0))
    assert h.quantile_ms(0.5) is None and h.to_json()["count"] == 0
    for s in [0.0005] * 98 + [0.003, 0.009]:
        h.add(s)
    j = h.to_json()
    assert j["buckets"] == {"le_1ms": 98, "le_2ms": 0, "le_5ms": 1, "gt_5ms": 1}
    assert j["count"] == 100 and j["max_ms"] == 9.0
    assert j["p50_ms_at_most"] == 1.0 and j["p99_ms_at_most"] == 5.0
    assert h.quantile_ms(1.0) == pytest.approx(9.0)  # the open bucket reports the max


def test_rate_window_spans_the_window_and_forgets_older_samples():
    r = RateWindow(60.0)
    assert r.rate() is None
    r.add(0.0, 0)
    r.add(10.0, 100)
    assert r.rate() == 10.0
    for t in range(20, 200, 10):
        r.add(float(t), 100 + (t - 10) * 2)  # 2 rows/s from t=10 on
    assert r.rate() == pytest.approx(2.0)
    assert len(r._samples) <= 8  # bounded: one per period over the window


class FakeUplink:
    def __init__(self) -> None:
        self.connected = True
        self.sent_rows = 0
        self.statuses: dict[str, dict[str, Any]] = {}

    def set_status(self, name: str, payload: dict[str, Any]) -> None:
        json.dumps(payload)  # what the real one does with it
        self.statuses[name] = payload

    async def run(self) -> None:
        await asyncio.Event().wait()


def low_line() -> bytes:
    stamp = datetime.now(UTC).strftime("%m/%d/%y %H:%M:%S")
    return f"{stamp} SPO2=070% BPM=064 PI=11.82% ALARM=0000 EXC=000800\r\n".encode()


async def test_stats_over_the_control_socket_and_the_health_topic(tmp_path):
    sock = tmp_path / "ctl.sock"
    streams = Streams()
    gw = Gateway(
        config(tmp_path, f'timezone = "UTC"\n[alarms]\ncontrol_socket = "{sock}"\n'),
        opener=streams,
        notifier=Notifier({}),
        outputs=[MemoryOutput("m")],
    )
    gw.uplink = FakeUplink()  # type: ignore[assignment]
    gw.stats_settings = type(gw.stats_settings)(health_period_s=0.05)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        await wait_for(lambda: "/dev/fake0" in streams.by_port and sock.exists())
        streams.by_port["/dev/fake0"].push(low_line() + b"garbage\r\n")
        await wait_for(lambda: gw.alarm_latency.count > 0)
        stats = (await asyncio.to_thread(request, sock, {"cmd": "stats"}))["stats"]
        link = stats["links"]["m1"]
        assert link["connected"] and link["frames_ok"] == 1 and link["frames_bad"] >= 1
        assert stats["counts"]["observation"] == 3
        assert stats["alarm_latency"]["count"] >= 1 and stats["alarm_latency"]["max_ms"] < 1000
        assert set(stats["drops"]) >= {"alarm_reentrant", "sink0_jsonl", "unmapped_readings"}
        assert stats["loop_lag"]["late_wakes"] == 0 and stats["store"] is None
        up = stats["uplink"]
        assert up["connected"] and up["sent_rows"] == 0 and up["rows_per_s"] in (None, 0.0)
        # The other commands keep working beside it.
        listed = await asyncio.to_thread(request, sock, {"cmd": "list"})
        assert any(a["rule_id"] for a in listed["alarms"])
        # The health topic: the same counters, retained, refreshed every period.
        gw.uplink.sent_rows = 40  # type: ignore[union-attr]
        await wait_for(lambda: gw.uplink.statuses.get("health", {}).get("uplink", {}).get("sent_rows") == 40)  # type: ignore[union-attr]
        health = gw.uplink.statuses["health"]  # type: ignore[union-attr]
        assert health["links"]["m1"]["frames_ok"] == 1 and health["uplink"]["rows_per_s"] > 0
        # The CLI prints it as JSON.
        res = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "appliance.cli", "stats", "--socket", str(sock)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["links"]["m1"]["frames_ok"] == 1
    finally:
        stop.set()
        assert await runner


def test_stats_command_without_a_provider_is_an_error_reply(tmp_path):
    from appliance.alarms import AlarmCircuit
    from appliance.control import ControlServer
    from tests.appliance.test_alarms import RULES

    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    reply = ControlServer(circuit, tmp_path / "s").reply_for(b'{"cmd": "stats"}\n')
    assert reply == {"ok": False, "error": "no counters on this control socket"}
    with pytest.raises(ControlError, match="cannot reach"):
        request(tmp_path / "missing.sock", {"cmd": "stats"})


def test_cli_stats_needs_a_socket(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "stats"], capture_output=True, text=True, timeout=30, check=False
    )
    assert res.returncode == 2 and "stats: give --config FILE or --socket PATH" in res.stderr


def test_store_counters_come_from_memory_without_a_query(tmp_path):
    extra = f'[queue]\npath = "{tmp_path / "store.db"}"\nkey_path = "{tmp_path / "store.key"}"\n'
    gw = Gateway(config(tmp_path, extra), notifier=Notifier({}), outputs=[MemoryOutput("m")])
    assert gw.queue is not None
    queries: list[str] = []
    gw.queue.store._db.set_trace_callback(queries.append)
    try:
        stats = gw.stats()
    finally:
        gw.queue.store._db.set_trace_callback(None)
        gw.queue.close()
    assert queries == []  # gauges only: a full store is never scanned for them
    store = stats["store"]
    assert store["max_bytes"] > 0 and 0 <= store["fill"] < 1 and store["held_in_memory"] == 0
    assert stats["drops"]["queue_memory"] == 0 and stats["drops"]["store_budget"] == 0
    json.dumps(stats)
