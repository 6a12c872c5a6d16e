"""Gateway time: UTC anchored on the monotonic clock.

`received` stamps must not jump back when NTP steps the wall clock on a box that
booted without a network, so wall time is read once and advanced by the
monotonic clock. Tests inject `FixedClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FixedClock", "MonotonicUTC"]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class MonotonicUTC:
    def __init__(self) -> None:
        self._anchor_utc = datetime.now(UTC)
        self._anchor_mono = time.monotonic()

    def now(self) -> datetime:
        return self._anchor_utc + timedelta(seconds=time.monotonic() - self._anchor_mono)

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock that moves only when told to (unit tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
