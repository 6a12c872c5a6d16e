"""The kernel's clock at the edge: is the system clock synchronised? And the poll task.

`KernelTime` is the `TimeSource` of a running gateway: monotonic and wall time
from `time`, and the sync status from adjtimex(2) in read-only mode (modes 0, no
privilege needed). The kernel says "unsynchronised" with the return value
TIME_ERROR or the STA_UNSYNC status bit; NTP daemons (chrony, systemd-timesyncd)
clear both once they have set the clock. Where adjtimex does not exist (not
Linux) the status is unknown (None), which the clock takes as synchronised: such
a machine is a developer's, not a bedside box. Where it exists but the call fails
(a system-call filter without clock_adjtime, which glibc's adjtimex() is), the clock
is taken as NOT synchronised, said once in the log: a box that cannot tell flags its
records rather than vouching for them (the image's unit once did exactly this).

`run_clock` samples the clock every `poll_s` from the event loop (one system
call, never on the alarm path) and publishes what the clock core reports.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
from typing import Final

from appliance.core.clock import GatewayClock
from appliance.core.model import Record

__all__ = ["STA_UNSYNC", "TIME_ERROR", "KernelTime", "kernel_clock", "run_clock", "synced_from"]

log = logging.getLogger(__name__)

TIME_ERROR: Final = 5  # adjtimex(2): the clock is not synchronised
STA_UNSYNC: Final = 0x0040  # status bit: the clock is not synchronised


class _Timex(ctypes.Structure):
    """struct timex (linux/timex.h) up to `status`, then room for the rest."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        # The kernel writes the whole struct (about 200 bytes on 64-bit): generous room.
        ("_rest", ctypes.c_byte * 512),
    ]


def synced_from(result: int, status: int) -> bool | None:
    """The sync status from adjtimex's return value and `status` field; None on an error."""
    if result < 0:
        return None
    return result != TIME_ERROR and not status & STA_UNSYNC


class KernelTime:
    """The machine's clocks; the sync status asked of the kernel on every call."""

    def __init__(self) -> None:
        self._adjtimex: Callable[[ctypes._Pointer[_Timex]], int] | None = None
        self._failed = False  # the failure was logged
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            self._adjtimex = libc.adjtimex
        except (OSError, AttributeError, TypeError):
            log.warning("adjtimex not available: the system clock's sync status is unknown")

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def synced(self) -> bool | None:
        if self._adjtimex is None:
            return None
        timex = _Timex()  # modes 0: read only
        result = int(self._adjtimex(ctypes.pointer(timex)))
        synced = synced_from(result, timex.status)
        if synced is None:
            if not self._failed:
                self._failed = True
                error = ctypes.get_errno()
                log.warning("adjtimex failed (%s): the clock is taken as not synchronised", os.strerror(error))
            return False
        return synced


def kernel_clock() -> GatewayClock:
    """The gateway clock of a running box: following the system clock once synchronised."""
    return GatewayClock(KernelTime())


async def run_clock(clock: GatewayClock, publish: Callable[[Record], None]) -> None:
    while True:
        for event in clock.poll():
            publish(event)
        await asyncio.sleep(clock.settings.poll_s)
