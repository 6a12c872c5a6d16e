"""Gateway time: UTC on the monotonic clock, following the system clock once synchronised.

`received` stamps must not jump back when NTP steps the wall clock on a box that
booted without a network. `GatewayClock` samples a `TimeSource` (monotonic time,
wall time, the kernel's sync status) and lets the pure core
(appliance/core/clocksync.py) decide the time: free-running on monotonic time
until the system clock is synchronised, then following it, never backwards.
The kernel's source lives at the edge (appliance/timesync.py); tests use
`MemoryTimeSource`, or `FixedClock` where time need not move by itself.
`MonotonicUTC` reads wall time once and never follows it: the fallback codecs
use when made without the gateway's clock (`bedside decode`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from appliance.core.clocksync import ClockSample, ClockSettings, ClockSync
from appliance.core.model import TechnicalEvent

__all__ = ["Clock", "FixedClock", "GatewayClock", "MemoryTimeSource", "MonotonicUTC", "TimeSource"]


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


class TimeSource(Protocol):
    """The machine's clocks: monotonic and wall seconds, and whether the wall clock is synchronised."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def synced(self) -> bool | None: ...


class MemoryTimeSource:
    """A time source a test moves: `advance` moves both clocks, `step` the wall clock only."""

    def __init__(self, start: datetime, *, synced: bool | None = False) -> None:
        self.mono = 1000.0
        self.wall_s = start.timestamp()
        self.sync = synced

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall_s

    def synced(self) -> bool | None:
        return self.sync

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall_s += seconds

    def step(self, seconds: float) -> None:
        self.wall_s += seconds


class GatewayClock:
    """The gateway's clock over a time source; `poll()` samples it (the gateway's clock task)."""

    def __init__(self, source: TimeSource, settings: ClockSettings | None = None) -> None:
        self.source = source
        self.core = ClockSync(self._sample(), settings)
        # The first judgement is reported by the first poll (the gateway publishes it).
        self._pending = self.core.observe(self._sample())

    def _sample(self) -> ClockSample:
        return ClockSample(self.source.monotonic(), self.source.wall(), self.source.synced())

    @property
    def settings(self) -> ClockSettings:
        return self.core.settings

    @property
    def synced(self) -> bool:
        """False: stamps now are not on a synchronised clock (records are flagged)."""
        return self.core.synced

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.core.at(self.source.monotonic()), UTC)

    def monotonic(self) -> float:
        return self.source.monotonic()

    def poll(self) -> list[TechnicalEvent]:
        """Sample the source; the technical events to publish (sync condition, steps)."""
        events, self._pending = self._pending + self.core.observe(self._sample()), []
        return events
