"""The gateway wired to in-memory streams: hot path, pairing, sinks, shutdown."""

import asyncio
import json
from typing import Any

from appliance.config import parse_config
from appliance.core.model import Observation, TechnicalEvent
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from drivers.serial.transport import MemoryStream, PortSettings
from rules.outputs import MemoryOutput

LINE = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n"


def config(tmp_path, extra=""):
    return parse_config(
        f"""
[gateway]
bed_id = "ICU-9"
registry_path = "{tmp_path / "registry.json"}"
registry_poll_s = 0.1
max_clock_skew_s = 86400
[sink]
jsonl_path = "{tmp_path / "out.jsonl"}"
[[devices]]
id = "m1"
protocol = "masimo"
port = "/dev/fake0"
stale_after_s = 5
{extra}
"""
    )


class Streams:
    def __init__(self) -> None:
        self.by_port: dict[str, MemoryStream] = {}

    async def __call__(self, settings: PortSettings) -> MemoryStream:
        stream = MemoryStream()
        self.by_port[settings.port] = stream
        return stream


async def wait_for(predicate, timeout=3.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_bytes_reach_subscribers_in_the_same_turn_and_the_jsonl_sink(tmp_path):
    streams = Streams()
    gw = Gateway(config(tmp_path, 'timezone = "UTC"'), opener=streams, notifier=Notifier({}))
    seen: list[Any] = []
    gw.subscribers.append(seen.append)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    await wait_for(lambda: "/dev/fake0" in streams.by_port)
    streams.by_port["/dev/fake0"].push(LINE)
    await wait_for(lambda: any(isinstance(r, Observation) for r in seen))
    obs = [r for r in seen if isinstance(r, Observation)]
    assert {o.metric for o in obs} == {
        "MDC_PULS_OXIM_SAT_O2",
        "MDC_PULS_OXIM_PULS_RATE",
        "MDC_PULS_OXIM_PERF_REL",
    }
    assert all(o.bed_id == "ICU-9" and o.quarantine and o.patient_id is None for o in obs)
    # 2010 device clock is beyond even a one-day bound: receive time, clock_skew raised.
    assert any(isinstance(r, TechnicalEvent) and r.kind == "clock_skew" for r in seen)
    stop.set()
    assert await runner
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {x["type"] for x in lines} == {"observation", "technical", "alarm"}
    # The default rule set raised the technical clock-skew alarm through the circuit.
    assert any(x["type"] == "alarm" and x["rule_id"] == "clock-skew" for x in lines)
    assert sum(x["type"] == "observation" for x in lines) == 3


async def test_pairing_in_the_registry_reaches_the_running_gateway(tmp_path):
    streams = Streams()
    cfg = config(tmp_path)
    gw = Gateway(cfg, opener=streams, notifier=Notifier({}))
    seen: list[Any] = []
    gw.subscribers.append(seen.append)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    await wait_for(lambda: "/dev/fake0" in streams.by_port)
    from appliance.registry import Registry

    Registry(cfg.gateway.registry_path).pair("m1", "ICU-4", "P-77")
    await wait_for(lambda: gw.context(cfg.devices[0]).patient_id == "P-77")
    streams.by_port["/dev/fake0"].push(LINE)
    await wait_for(lambda: any(isinstance(r, Observation) for r in seen))
    obs = next(r for r in seen if isinstance(r, Observation))
    assert (obs.bed_id, obs.patient_id, obs.quarantine) == ("ICU-4", "P-77", False)
    stop.set()
    await runner


async def test_a_failing_subscriber_does_not_stop_the_others(tmp_path):
    gw = Gateway(config(tmp_path), opener=Streams(), notifier=Notifier({}))
    seen: list[Any] = []

    def broken(record):
        raise RuntimeError("boom")

    gw.subscribers += [broken, seen.append]
    gw.publish(TechnicalEvent("m1", "stale"))
    tech = [r for r in seen if isinstance(r, TechnicalEvent)]
    assert len(tech) == 1 and tech[0].bed_id == "ICU-9" and tech[0].time is not None
    # The default rules turned it into a "no data" alarm, also delivered.
    assert sorted(type(r).__name__ for r in seen) == ["AlarmEvent", "TechnicalEvent"]


async def test_a_link_crashing_at_run_time_raises_the_driver_crashed_alarm(tmp_path):
    # A driver bug (not a port problem): the supervisor restarts the link, and the
    # crash reaches the real alarm circuit as a latching technical alarm.
    async def buggy_opener(settings: PortSettings) -> MemoryStream:
        raise RuntimeError("driver bug")

    output = MemoryOutput()
    cfg = config(tmp_path, "[supervisor]\nrestart_min_s = 0.01\nrestart_max_s = 0.1")
    gw = Gateway(cfg, opener=buggy_opener, notifier=Notifier({}), outputs=[output])
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    await wait_for(lambda: any(a["rule_id"] == "driver-crashed" for a in gw.alarms.alarms()))
    alarm = next(a for a in gw.alarms.alarms() if a["rule_id"] == "driver-crashed")
    # Latching: it stays until acknowledged, even between crashes.
    assert (alarm["bed_id"], alarm["priority"]) == ("ICU-9", "medium") and alarm["state"] in ("active", "latched")
    assert output.annunciations and output.annunciations[-1][1].audible
    await wait_for(lambda: gw.counts["driver_crashed"] >= 3)  # still restarted, still alarming
    stop.set()
    assert await runner
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert any(x["type"] == "alarm" and x["rule_id"] == "driver-crashed" for x in lines)


class DyingOutput(MemoryOutput):
    """An output whose background task (writer, pattern player) dies after start."""

    async def run(self) -> None:
        await asyncio.sleep(0)
        raise OSError(5, "Input/output error")


async def test_an_alarm_output_task_dying_raises_the_output_failure_alarm(tmp_path):
    dying, other = DyingOutput("dying"), MemoryOutput("other")
    gw = Gateway(config(tmp_path), opener=Streams(), notifier=Notifier({}), outputs=[dying, other])
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    await wait_for(lambda: any(a["rule_id"] == "output-failure" for a in gw.alarms.alarms()))
    alarm = next(a for a in gw.alarms.alarms() if a["rule_id"] == "output-failure")
    assert alarm["priority"] == "high" and alarm["state"] in ("active", "latched")
    assert "dying" in gw.alarms.chain.failed
    # The remaining output carries the alarm; the dead one is no longer driven.
    assert any(a.audible == "high" for _, a in other.annunciations)
    assert not dying.annunciations
    stop.set()
    assert await runner
