"""Records waiting in memory for the store: bounded, with a stated overflow policy.

A pure core (no I/O, no clock): the queue's writer takes batches from here,
and gives a batch back when the store could not write it (disk full, I/O
error), so nothing is lost silently while the disk is sick.

Overflow policy:
- telemetry: at most `max_telemetry` observations; past that the oldest goes
  first and is counted.
- events (alarm and technical records) share `max_events`; past that the
  oldest technical event goes first; only when every held event is an alarm
  does the oldest alarm go (counted). The bound is large and alarms are rare;
  they were annunciated locally before they got here (the alarm circuit runs
  before the sinks), so what the bound can cost is the stored copy.
- a batch given back after a failed write goes to the front (it is the
  oldest), under the same bounds.

Invariant: every record added is at any moment in exactly one place: held
here, taken by the writer (in flight), stored, or counted in `dropped`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.core.model import AlarmEvent, Observation, TechnicalEvent

__all__ = ["Dropped", "Held", "HoldBuffer"]

Held = AlarmEvent | TechnicalEvent | Observation


@dataclass(slots=True)
class Dropped:
    telemetry: int = 0
    technical: int = 0
    alarm: int = 0

    @property
    def total(self) -> int:
        return self.telemetry + self.technical + self.alarm


class HoldBuffer:
    def __init__(self, max_telemetry: int, max_events: int) -> None:
        if max_telemetry < 1 or max_events < 1:
            raise ValueError("hold bounds must be at least 1")
        self.max_telemetry = max_telemetry
        self.max_events = max_events
        self.alarms: deque[AlarmEvent] = deque()
        self.technical: deque[TechnicalEvent] = deque()
        self.telemetry: deque[Observation] = deque()
        self.dropped = Dropped()

    def __len__(self) -> int:
        return len(self.alarms) + len(self.technical) + len(self.telemetry)

    def describe(self) -> str:
        return f"{len(self.alarms)} alarm, {len(self.technical)} technical, {len(self.telemetry)} telemetry"

    def add(self, record: Held) -> None:
        if isinstance(record, AlarmEvent):
            self.alarms.append(record)
            self._trim_events()
        elif isinstance(record, TechnicalEvent):
            self.technical.append(record)
            self._trim_events()
        else:
            self.telemetry.append(record)
            self._trim_telemetry()

    def give_back(self, batch: Sequence[Held]) -> None:
        """Return a batch the store did not take, in its order, ahead of newer records."""
        for record in reversed(batch):
            if isinstance(record, AlarmEvent):
                self.alarms.appendleft(record)
            elif isinstance(record, TechnicalEvent):
                self.technical.appendleft(record)
            else:
                self.telemetry.appendleft(record)
        self._trim_events()
        self._trim_telemetry()

    def take_alarm(self) -> AlarmEvent | None:
        return self.alarms.popleft() if self.alarms else None

    def take_technical(self) -> list[TechnicalEvent]:
        batch = list(self.technical)
        self.technical.clear()
        return batch

    def take_telemetry(self, limit: int) -> list[Observation]:
        return [self.telemetry.popleft() for _ in range(min(limit, len(self.telemetry)))]

    def _trim_events(self) -> None:
        while len(self.alarms) + len(self.technical) > self.max_events:
            if self.technical:
                self.technical.popleft()
                self.dropped.technical += 1
            else:
                self.alarms.popleft()
                self.dropped.alarm += 1

    def _trim_telemetry(self) -> None:
        while len(self.telemetry) > self.max_telemetry:
            self.telemetry.popleft()
            self.dropped.telemetry += 1
