"""The gateway's time, decided: follow the system clock once it is synchronised.

A Raspberry Pi boots without a battery clock: until NTP has synchronised it, the
wall clock says whatever the last shutdown (or 1970) left, and NTP then steps it,
possibly by hours, under a running gateway. `ClockSync` is the pure core that turns
samples of (monotonic time, wall time, the kernel's sync status) into the gateway's
UTC, so that:

- gateway time is monotonic time plus an offset; while the kernel says the clock is
  unsynchronised the offset stays where it was (the wall clock is not trusted), and
  once it is synchronised each sample re-anchors the offset on the wall clock;
- a change of offset beyond `step_s` is a step, reported once as a `clock_step`
  technical event with the old and new offset;
- a stamp never goes backwards: when the wall clock steps back, gateway time keeps
  running at `1 - slew` of real speed until it meets the wall clock again
  (never standing still, never repeating a stamp range);
- the gateway is synchronised only while the kernel says so and gateway time is
  within `step_s` of the wall clock; otherwise stamps are flagged `clock_unsynced`
  by the gateway and one `clock_unsynced` technical event is active.

Pure: no I/O, no clock of its own; the caller samples (appliance/core/clock.py
`GatewayClock` over a `TimeSource`). It does not decide how often to sample.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from appliance.core.model import TechnicalEvent
from appliance.core.transitions import TransitionTable
from appliance.core.vocab import TechnicalKind

__all__ = ["DEVICE_ID", "TRANSITIONS", "ClockSample", "ClockSettings", "ClockSync", "SyncInput", "SyncState"]

# Gateway-wide conditions are reported under this device id (as the loop-lag monitor does).
DEVICE_ID: Final = "gateway"


class SyncState(enum.Enum):
    STARTING = "starting"  # anchored, not judged yet
    UNSYNCED = "unsynced"  # the kernel's clock is not synchronised: free-running on monotonic time
    CATCHING_UP = "catching_up"  # synchronised, but gateway time is ahead of it (a step back): slewing
    SYNCED = "synced"


class SyncInput(enum.Enum):
    """What one sample says, judged against the gateway's current time."""

    UNSYNCED = "unsynced"
    AHEAD = "ahead"
    ON_TIME = "on_time"


_TARGET: Final = {SyncInput.UNSYNCED: SyncState.UNSYNCED, SyncInput.AHEAD: SyncState.CATCHING_UP}
# Every state may move to every judged state: the kernel and NTP can do anything in any order.
TRANSITIONS: Final = TransitionTable(
    "gateway clock",
    {(s, i): _TARGET.get(i, SyncState.SYNCED) for s in SyncState for i in SyncInput},
)


@dataclass(frozen=True, slots=True)
class ClockSettings:
    # How often the kernel is asked; between samples gateway time runs on monotonic time.
    poll_s: float = 5.0
    # An offset change beyond this is a step (reported), and being ahead of the wall
    # clock by more than this is not synchronised. NTP slews below it (at most 500 ppm).
    step_s: float = 1.0
    # After a step back, gateway time runs at (1 - slew) of real time until it meets
    # the wall clock: half speed catches up a step of S seconds in 2 S.
    slew: float = 0.5


@dataclass(frozen=True, slots=True)
class ClockSample:
    mono: float  # monotonic seconds
    wall: float  # POSIX seconds from the system clock
    synced: bool | None  # the kernel's sync status; None: it cannot be asked (taken as synchronised)


class ClockSync:
    """Gateway UTC (POSIX seconds) from monotonic time, re-anchored by samples."""

    def __init__(self, first: ClockSample, settings: ClockSettings | None = None) -> None:
        self.settings = settings or ClockSettings()
        self.state = SyncState.STARTING
        self.steps = 0
        self._offset = first.wall - first.mono  # target: utc = mono + offset
        # How far the issued line was ahead of the target at `_excess_mono` (slewed away).
        self._excess = 0.0
        self._excess_mono = first.mono
        self._last = first.wall  # the latest stamp handed out

    @property
    def synced(self) -> bool:
        return self.state is SyncState.SYNCED

    @property
    def offset_s(self) -> float:
        return self._offset

    def at(self, mono: float) -> float:
        """Gateway time at monotonic `mono`; never earlier than a stamp already given."""
        excess = max(0.0, self._excess - self.settings.slew * (mono - self._excess_mono))
        stamp = max(mono + self._offset + excess, self._last)
        self._last = stamp
        return stamp

    def observe(self, sample: ClockSample) -> list[TechnicalEvent]:
        """Take one sample; the technical events it causes (a step, the sync condition)."""
        current = self.at(sample.mono)
        events: list[TechnicalEvent] = []
        trusted = sample.synced is not False
        if trusted:
            offset = sample.wall - sample.mono
            if abs(offset - self._offset) > self.settings.step_s:
                self.steps += 1
                events.append(self._step_event(self._offset, offset))
            self._offset = offset
            self._excess = max(0.0, current - sample.wall)
            self._excess_mono = sample.mono
        if not trusted:
            judged = SyncInput.UNSYNCED
        elif self._excess > self.settings.step_s:
            judged = SyncInput.AHEAD
        else:
            judged = SyncInput.ON_TIME
        state = TRANSITIONS.next(self.state, judged)
        events += self._condition(self.state, state)
        self.state = state
        return events

    def _step_event(self, old: float, new: float) -> TechnicalEvent:
        return TechnicalEvent(
            DEVICE_ID,
            TechnicalKind.CLOCK_STEP,
            count=self.steps,
            detail=f"system clock stepped {new - old:+.3f} s (offset to monotonic {old:.3f} -> {new:.3f} s)",
        )

    def _condition(self, old: SyncState, new: SyncState) -> list[TechnicalEvent]:
        # One condition across the boundary of SYNCED: raised on leaving it (or on
        # starting without it), ended on reaching it.
        was_synced = old in (SyncState.STARTING, SyncState.SYNCED)
        if was_synced and new is not SyncState.SYNCED:
            if new is SyncState.UNSYNCED:
                detail = "system clock not synchronised (kernel): records flagged clock_unsynced"
            else:
                detail = f"gateway clock {self._excess:.1f} s ahead of the synchronised clock, catching up"
            return [TechnicalEvent(DEVICE_ID, TechnicalKind.CLOCK_UNSYNCED, detail=detail)]
        if not was_synced and new is SyncState.SYNCED:
            return [TechnicalEvent(DEVICE_ID, TechnicalKind.CLOCK_UNSYNCED, active=False, detail="clock synchronised")]
        return []
