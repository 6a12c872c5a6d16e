"""The alarm circuit inside the gateway: same-turn delivery, failover, blocked disk.

There is no uplink yet (its issue), so "broker down" is the only state it can be in.
"""

import asyncio
import statistics
import threading
import time
from typing import Any

from appliance.alarms import AlarmCircuit
from appliance.config import parse_config
from appliance.core.model import AlarmEvent, Observation
from appliance.gateway import Gateway
from appliance.queue.store import Store
from appliance.sdnotify import Notifier
from appliance.sinks import JsonlSink
from rules.engine import Ack
from rules.outputs import MemoryOutput
from rules.spec import parse_rules
from tests.appliance.test_gateway import Streams
from tests.rules.test_engine import obs

RULES = parse_rules(
    """
[[rule]]
id = "desat"
kind = "limit"
metric = "MDC_PULS_OXIM_SAT_O2"
below = 85.0
priority = "high"
[[rule]]
id = "output-failure"
kind = "technical"
event = "output_failure"
priority = "high"
latching = true
"""
)


def line(spo2: int, second: int) -> bytes:
    return f"01/01/26 00:00:{second:02d} SPO2={spo2:03d}% BPM=070 PI=02.00% ALARM=0000 EXC=000800\r\n".encode()


def test_failed_output_raises_a_technical_alarm_on_the_others():
    published: list[Any] = []
    bad, good = MemoryOutput("gpio"), MemoryOutput("console")
    circuit = AlarmCircuit(RULES, [bad, good], published.append, now=lambda: 1000.0)
    bad.fail = True
    circuit.on_record(obs(80, 1000))
    rules_seen = {e.rule_id for _, e in good.events}
    assert rules_seen == {"desat"}
    # The failure report is published; fed back (as the gateway does) it alarms.
    failures = [p for p in published if getattr(p, "kind", None) == "output_failure"]
    assert failures
    circuit.on_record(failures[0])
    assert {e.rule_id for _, e in good.events} == {"desat", "output-failure"}
    assert good.annunciations[-1][1].audible == "high"


def test_operator_ack_through_the_circuit():
    out = MemoryOutput()
    circuit = AlarmCircuit(RULES, [out], lambda r: None, now=lambda: 1000.0)
    circuit.on_record(obs(80, 1000))
    assert circuit.alarms()[0]["state"] == "active"
    circuit.command(Ack("B1"))
    assert circuit.alarms()[0]["state"] == "acknowledged"


def gateway(tmp_path, out):
    cfg = parse_config(
        f"""
[gateway]
bed_id = "ICU-1"
registry_path = "{tmp_path / "registry.json"}"
max_clock_skew_s = 86400
[sink]
jsonl_path = "{tmp_path / "out.jsonl"}"
[queue]
path = "{tmp_path / "store.db"}"
key_path = "{tmp_path / "store.key"}"
commit_interval_ms = 20
[[devices]]
id = "m1"
protocol = "masimo"
port = "/dev/fake"
"""
    )
    streams = Streams()
    return Gateway(cfg, opener=streams, notifier=Notifier({}), ruleset=RULES, outputs=[out]), streams


async def measure(gw, streams, out, n=40):
    """Seconds from bytes arriving to the output call, for n alarm onsets."""
    latencies = []
    for i in range(n):
        assert streams.by_port.get("/dev/fake") is not None
        before = len(out.events)
        t0 = time.perf_counter()
        streams.by_port["/dev/fake"].push(line(80, i % 60))
        while len(out.events) == before:
            await asyncio.sleep(0)
        latencies.append(out.events[-1][0] - t0)
        streams.by_port["/dev/fake"].push(line(97, i % 60))
        while out.events[-1][1].state != "cleared":
            await asyncio.sleep(0)
    return latencies


async def test_alarm_reaches_the_output_in_the_same_turn_as_the_observation(tmp_path):
    out = MemoryOutput()
    gw, streams = gateway(tmp_path, out)
    order: list[str] = []

    def after_circuit(record):
        # Subscribers after the circuit run in the same synchronous call chain:
        # by the time the observation reaches them the output has been driven.
        if isinstance(record, Observation) and record.value == 80:
            order.append("alarm already out" if out.events else "alarm missing")

    gw.subscribers.append(after_circuit)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    while streams.by_port.get("/dev/fake") is None:
        await asyncio.sleep(0.01)
    streams.by_port["/dev/fake"].push(line(80, 1))
    while not order:
        await asyncio.sleep(0.01)
    assert order == ["alarm already out"]
    stop.set()
    await task


async def test_blocked_disk_does_not_change_alarm_latency(tmp_path, monkeypatch):
    out = MemoryOutput()
    gw, streams = gateway(tmp_path, out)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    while streams.by_port.get("/dev/fake") is None:
        await asyncio.sleep(0.01)
    free = await measure(gw, streams, out)
    assert gw.queue is not None
    await gw.queue.flush()
    stored = (await gw.queue.stats()).records
    assert stored.get("alarm", 0) >= 40  # alarms really reached the durable store
    # Now every write of the store and of the record sink hangs, as on a dead SD card.
    release = threading.Event()
    monkeypatch.setattr(JsonlSink, "_write", lambda self, lines: release.wait())
    monkeypatch.setattr(Store, "put", lambda self, *a, **k: release.wait())
    blocked = await measure(gw, streams, out)
    assert all(isinstance(e, AlarmEvent) for _, e in out.events)
    ratio = statistics.median(blocked) / statistics.median(free)
    assert ratio < 3, (statistics.median(free), statistics.median(blocked))
    release.set()
    stop.set()
    await task
