"""A clock stepped under a running gateway: the test owns the clock source (wall time,
monotonic time, the kernel's sync status) while a device streams on a pty."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.config import parse_config
from appliance.core.clock import GatewayClock, MemoryTimeSource
from appliance.core.clocksync import ClockSettings
from appliance.core.model import AlarmEvent, Observation, Record, TechnicalEvent
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from drivers import registry
from drivers.family import DeviceFamily
from rules.outputs import MemoryOutput
from tests.drivers.test_toy_family import TOY

BOOT = datetime(2030, 1, 1, tzinfo=UTC)  # what the box believed at boot, before NTP
STEP_S = 3 * 365 * 86_400.0  # NTP's first answer: years later


@pytest.fixture
def toy() -> Iterator[DeviceFamily]:
    with registry.register(TOY) as family:
        yield family


async def _wait(cond: Any) -> None:
    async with asyncio.timeout(5):
        while not cond():
            await asyncio.sleep(0.01)


async def test_a_stepped_clock_under_a_running_gateway(toy, tmp_path):
    master, slave = os.openpty()
    text = (
        f'[gateway]\nbed_id = "ICU-T"\nregistry_path = "{tmp_path / "r.json"}"\n'
        f'[[devices]]\nid = "toy-1"\nprotocol = "toy"\nport = "{os.ttyname(slave)}"\nexclusive = false\n'
    )
    source = MemoryTimeSource(BOOT, synced=False)
    clock = GatewayClock(source, ClockSettings(poll_s=0.01))
    gw = Gateway(parse_config(text), clock=clock, notifier=Notifier({}), outputs=[MemoryOutput("m")])
    seen: list[Record] = []
    gw.subscribers.append(seen.append)

    def observations() -> list[Observation]:
        return [r for r in seen if isinstance(r, Observation)]

    def technical(kind: str) -> list[TechnicalEvent]:
        return [r for r in seen if isinstance(r, TechnicalEvent) and r.kind == kind]

    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        await _wait(lambda: gw.links["toy-1"].connected and technical("clock_unsynced"))
        for hr in (70, 71):
            source.advance(1.0)
            os.write(master, b"TOY HR=%d\n" % hr)
            await _wait(lambda n=hr - 69: len(observations()) == n)
        # NTP answers: the wall clock steps years ahead and the kernel says synchronised.
        source.advance(1.0)
        source.step(STEP_S)
        source.sync = True
        await _wait(lambda: technical("clock_step") and not technical("clock_unsynced")[-1].active)
        source.advance(1.0)
        os.write(master, b"TOY HR=72\n")
        await _wait(lambda: len(observations()) == 3)
        # A bad server steps it back a minute: stamps slow down, never run back.
        source.advance(1.0)
        source.step(-60.0)
        await _wait(lambda: len(technical("clock_step")) == 2 and technical("clock_unsynced")[-1].active)
        source.advance(1.0)
        os.write(master, b"TOY HR=73\n")
        await _wait(lambda: len(observations()) == 4)
    finally:
        stop.set()
        await runner
        os.close(master)
        os.close(slave)

    obs = observations()
    assert ["clock_unsynced" in o.flags for o in obs] == [True, True, False, True]
    assert all(o.quality == "valid" for o in obs)  # the values are as good; only their time is in doubt
    received = [o.received for o in obs]
    assert received == sorted(received)  # monotonic through both steps
    assert obs[0].received == datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert obs[2].received == datetime.fromtimestamp(BOOT.timestamp() + STEP_S + 4.0, UTC)
    assert obs[3].received > obs[2].received
    unsynced = [(e.active, e.device_id, e.bed_id) for e in technical("clock_unsynced")]
    assert unsynced == [(True, "gateway", "ICU-T"), (False, "gateway", "ICU-T"), (True, "gateway", "ICU-T")]
    assert "+94608000.000 s" in technical("clock_step")[0].detail
    assert "-60.000 s" in technical("clock_step")[1].detail
    # The technical alarm: raised until sync, cleared with it (rules/default_adult.toml).
    alarms = [(a.state, a.priority) for a in seen if isinstance(a, AlarmEvent) and a.rule_id == "clock-unsynced"]
    assert alarms[:2] == [("active", "low"), ("cleared", "low")]
