"""Per-patient consent to send their data off the box: a pure book and its file.

A patient's consent is `granted` or `withheld`, set by the ADT feed (CON-11, see
the feed's reader) or by an operator (`bedside consent set`); a patient nobody
said anything about has the configured default (`[clinical] default_consent`).
Consent gates what leaves the box for that patient (telemetry, and the clinical
topic); it never gates the local alarms, which run on every reading whatever the
consent. Withheld observations are kept in the store's `withheld` class for
`[queue] withheld_ttl_s` and then purged (appliance/queue/queue.py).

Bounded: at most `MAX_PATIENTS` entries; past it the oldest change goes (its
patient falls back to the default), said in the returned text.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from appliance.core.errors import BedsideInputError

__all__ = ["WITHHELD_FLAG", "Consent", "ConsentBook", "ConsentEntry"]

MAX_PATIENTS: Final = 10_000
FORMAT: Final = 1
# On an observation of a patient whose consent is withheld: the queue keeps it in the
# store's `withheld` class (never sent); the alarm path ignores the flag.
WITHHELD_FLAG: Final = "consent_withheld"


class Consent(enum.StrEnum):
    GRANTED = "granted"
    WITHHELD = "withheld"


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    state: Consent
    source: str  # "adt" | "operator:<user>"
    time_ms: int


@dataclass(slots=True)
class ConsentBook:
    default: Consent = Consent.GRANTED
    _entries: OrderedDict[str, ConsentEntry] = field(default_factory=OrderedDict)

    def state(self, patient_id: str) -> Consent:
        entry = self._entries.get(patient_id)
        return self.default if entry is None else entry.state

    def entries(self) -> dict[str, ConsentEntry]:
        return dict(self._entries)

    def set(self, patient_id: str, state: Consent, source: str, time_ms: int) -> bool:
        """Record a decision; True when the patient's consent changed."""
        before = self.state(patient_id)
        self._entries.pop(patient_id, None)
        self._entries[patient_id] = ConsentEntry(state, source, time_ms)
        while len(self._entries) > MAX_PATIENTS:
            self._entries.popitem(last=False)
        return before is not state

    def to_json(self) -> dict[str, Any]:
        rows = {p: {"state": e.state.value, "source": e.source, "time_ms": e.time_ms} for p, e in self._entries.items()}
        return {"v": FORMAT, "patients": rows}

    @classmethod
    def from_json(cls, data: Any, default: Consent, source: str = "consent") -> ConsentBook:
        book = cls(default)
        if data is None:
            return book
        try:
            if data.get("v") != FORMAT:
                raise BedsideInputError(f"{source}: consent format {data.get('v')!r}, expected {FORMAT}")
            for patient, row in data["patients"].items():
                book._entries[str(patient)] = ConsentEntry(
                    Consent(row["state"]), str(row["source"]), int(row["time_ms"])
                )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BedsideInputError(f"{source}: not a consent file ({type(exc).__name__}: {exc})") from None
        return book
