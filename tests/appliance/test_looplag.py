"""The loop-lag monitor: a held event loop is reported, and the report ends."""

from __future__ import annotations

import asyncio
import time

from appliance.core.model import TechnicalEvent
from appliance.looplag import LagMonitor, LagSettings

SETTINGS = LagSettings(interval_s=0.01, bound_s=0.1, clear_after_s=0.3)


def test_one_event_per_episode_and_an_end_after_a_quiet_spell() -> None:
    mon = LagMonitor(SETTINGS)
    assert mon.observe(0.05, 1.0) is None
    raised = mon.observe(0.5, 2.0)
    assert raised is not None and raised.kind == "loop_lag" and raised.active and "500 ms" in raised.detail
    assert mon.observe(0.4, 2.1) is None  # the same episode
    assert mon.observe(0.0, 2.2) is None  # not quiet long enough yet
    ended = mon.observe(0.0, 2.5)
    assert ended is not None and not ended.active
    assert mon.worst_s == 0.5 and mon.late_wakes == 2


def test_a_blocked_loop_is_reported_while_it_runs() -> None:
    async def main() -> list[TechnicalEvent]:
        seen: list[TechnicalEvent] = []
        mon = LagMonitor(SETTINGS)
        task = asyncio.create_task(mon.run(seen.append))
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # what a parser with quadratic cost does to everyone
        await asyncio.sleep(0.6)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert mon.worst_s >= 0.2
        return seen

    seen = asyncio.run(main())
    assert [e.active for e in seen] == [True, False]


def test_an_idle_loop_reports_nothing() -> None:
    async def main() -> LagMonitor:
        mon = LagMonitor(LagSettings(interval_s=0.01, bound_s=1.0))
        task = asyncio.create_task(mon.run(lambda e: None))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return mon

    assert asyncio.run(main()).late_wakes == 0
