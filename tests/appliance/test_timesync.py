"""The kernel's sync status at the edge (adjtimex parsed from a fake) and the poll task."""

from __future__ import annotations

import asyncio
import ctypes
from datetime import UTC, datetime
from typing import Any

from appliance.core.clock import GatewayClock, MemoryTimeSource
from appliance.core.clocksync import ClockSettings
from appliance.core.model import Record, TechnicalEvent
from appliance.timesync import STA_UNSYNC, TIME_ERROR, KernelTime, run_clock, synced_from

TIME_OK = 0
STA_PLL = 0x0001


def test_the_kernels_answer_is_parsed():
    assert synced_from(TIME_OK, STA_PLL) is True
    assert synced_from(TIME_ERROR, STA_PLL) is False  # the return value alone says it
    assert synced_from(TIME_OK, STA_PLL | STA_UNSYNC) is False  # and so does the status bit
    assert synced_from(-1, 0) is None  # the call failed: unknown


def fake_adjtimex(result: int, status: int) -> Any:
    def adjtimex(pointer: Any) -> int:
        timex = pointer.contents
        assert timex.modes == 0  # read only: never adjusts the clock
        timex.status = status
        return result

    return adjtimex


def test_kernel_time_asks_adjtimex_read_only():
    kernel = KernelTime()
    kernel._adjtimex = fake_adjtimex(TIME_OK, STA_PLL)
    assert kernel.synced() is True
    kernel._adjtimex = fake_adjtimex(TIME_ERROR, STA_UNSYNC)
    assert kernel.synced() is False
    kernel._adjtimex = None  # no adjtimex on this system
    assert kernel.synced() is None


def test_a_failing_adjtimex_is_not_synchronised_and_said_once(caplog):
    # A system-call filter that lets adjtimex through but not clock_adjtime (what glibc
    # calls) fails the call with EPERM: that must not pass for a synchronised clock.
    kernel = KernelTime()
    kernel._adjtimex = fake_adjtimex(-1, 0)
    caplog.set_level("WARNING", logger="appliance.timesync")
    assert kernel.synced() is False
    assert kernel.synced() is False
    assert caplog.text.count("adjtimex failed") == 1


def test_kernel_time_calls_the_real_adjtimex():
    kernel = KernelTime()
    assert kernel.synced() in (True, False, None)  # whatever this machine's clock is, no error
    assert isinstance(kernel.wall(), float) and kernel.monotonic() > 0
    assert ctypes.sizeof(ctypes.c_long) in (4, 8)


async def test_the_clock_task_publishes_what_the_clock_reports():
    source = MemoryTimeSource(datetime(2030, 1, 1, tzinfo=UTC))
    clock = GatewayClock(source, ClockSettings(poll_s=0.01))
    seen: list[Record] = []
    task = asyncio.create_task(run_clock(clock, seen.append))
    try:
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
            source.sync = True
            while len(seen) < 2:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert [(r.kind, r.active) for r in seen if isinstance(r, TechnicalEvent)] == [
        ("clock_unsynced", True),
        ("clock_unsynced", False),
    ]
