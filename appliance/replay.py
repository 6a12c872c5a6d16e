"""`bedside rules replay`: recorded observations and technical events through a
rule set, alarm events out. Deterministic: time comes from the records
(`received`, else `time`), never from the clock, and timers advance to each
record's time before it is evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from appliance.core.errors import BedsideInputError
from appliance.core.model import (
    AlarmEvent,
    Observation,
    RecordFormatError,
    TechnicalEvent,
    from_json_line,
    to_json_line,
)
from rules.engine import Engine, EngineState, Tick
from rules.spec import RuleSet

__all__ = ["ReplayError", "replay"]


class ReplayError(BedsideInputError, ValueError):
    """A line of the input is not a canonical record; names the line."""


def replay(ruleset: RuleSet, lines: Iterable[str], out: TextIO, source: str = "<stdin>") -> int:
    engine = Engine(ruleset)
    state = EngineState()
    emitted = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = from_json_line(line)
        except RecordFormatError as exc:
            raise ReplayError(f"{source}:{number}: {exc}") from None
        if isinstance(record, Observation):
            now = record.received.timestamp()
        elif isinstance(record, TechnicalEvent) and record.time is not None:
            now = record.time.timestamp()
        else:
            continue  # readings and alarm events are not inputs to the rules
        for event in (Tick(), record):
            state, actions = engine.evaluate(state, event, now)
            for action in actions:
                if isinstance(action, AlarmEvent):
                    out.write(to_json_line(action) + "\n")
                    emitted += 1
    return emitted
