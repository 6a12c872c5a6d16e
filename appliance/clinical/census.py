"""The bed census: which patient is in which bed, as the hospital's ADT feed says.

A pure core (no I/O, no clock). `Census.apply(event)` takes one ADT event
(`CensusEvent`, from the feed's reader) and returns an `Outcome`: taken, with the beds whose
patient changed, or refused with one line why. The census is the authority on
who lies in a bed; the gateway checks pairings against it (`check_pairing`) and
ends the pairings of a bed whose patient left (appliance/clinical/plane.py).

Rules (each refusal leaves the census unchanged and is ACKed AE to the sender):
- A01 admit: the bed's previous occupant, if any, is displaced (the feed is the
  authority; its discharge was missed). A patient already in another bed is
  refused: that is a transfer (A02), and guessing would move the wrong patient.
- A02 transfer, A03 discharge, A08 update, A11 cancel admit: the patient must be
  in the census; otherwise the message is out of order (an A03 before its A01)
  and is refused.
- A13 cancel discharge: the patient must not be in the census.
- Identifiers: every PID-3 identifier (and a wristband string a later message
  adds) names one patient. A message whose identifiers belong to two different
  patients of the census is refused (conflicting identifiers).

Beds are ADT locations `unit^room^bed` (PV1-3); a gateway bed id matches one when it is
one of `appliance.identity.bed_names` of it (an ambiguous short name, such as
bed "1" of two units, matches none).

Bounds: at most `MAX_STAYS` patients (a hospital-wide feed; past it an admission
is refused with the reason), `MAX_DISCHARGED` recent discharges remembered for
A13 (the oldest go: an A13 for one of them is taken as a fresh admission to the
named bed), `MAX_IDENTIFIERS` identifiers per patient (more are ignored).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from appliance.core.errors import BedsideInputError
from appliance.identity import bed_names
from appliance.pairing import PairingRefused

__all__ = [
    "MAX_STAYS",
    "BedChange",
    "Census",
    "CensusError",
    "CensusEvent",
    "Outcome",
    "PairingRefused",
    "Stay",
    "check_pairing",
]

MAX_STAYS: Final = 10_000
MAX_DISCHARGED: Final = 256
MAX_IDENTIFIERS: Final = 16
FORMAT: Final = 1


class CensusEvent(Protocol):
    """One census message as the feed's reader gives it (drivers/registry.py: census_listener)."""

    @property
    def trigger(self) -> str: ...  # A01, A02, A03, A08, A11, A13

    @property
    def patient_ids(self) -> tuple[str, ...]: ...  # the primary identifier first

    @property
    def location(self) -> tuple[str, str, str]: ...  # point of care, room, bed

    @property
    def visit(self) -> str: ...

    @property
    def consent(self) -> str: ...  # "granted" | "withheld" | "" (the message says nothing)

    @property
    def control_id(self) -> str: ...  # the sender's message id, for events and logs


class CensusError(BedsideInputError):
    """A census file that cannot be read."""


@dataclass(frozen=True, slots=True)
class Stay:
    patient_id: str  # the primary identifier (PID-3, first repetition, of the admitting message)
    identifiers: tuple[str, ...]  # every identifier of the patient, the primary first
    location: str  # unit^room^bed
    visit: str = ""
    since_ms: int = 0  # when the census put the patient in this bed (gateway clock): nothing older is theirs

    def named_by(self, ident: str) -> bool:
        return ident in self.identifiers


@dataclass(frozen=True, slots=True)
class BedChange:
    location: str
    before: str | None  # patient id that left the bed (None: it was empty)
    after: str | None  # patient id now in the bed (None: now empty)
    why: str


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str = ""
    changes: tuple[BedChange, ...] = ()
    patient_id: str = ""  # the census patient the event is about (for consent)


def _loc(parts: tuple[str, str, str]) -> str:
    return "^".join(parts)


@dataclass(slots=True)
class Census:
    max_stays: int = MAX_STAYS
    _stays: dict[str, Stay] = field(default_factory=dict)  # patient id -> stay
    _beds: dict[str, str] = field(default_factory=dict)  # location -> patient id
    _ids: dict[str, str] = field(default_factory=dict)  # any identifier -> patient id
    _discharged: OrderedDict[str, Stay] = field(default_factory=OrderedDict)
    _names: dict[str, str | None] | None = None  # bed name -> location (None: ambiguous); rebuilt lazily

    # -- queries -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._stays)

    def stays(self) -> list[Stay]:
        return sorted(self._stays.values(), key=lambda s: s.location)

    def stay_of(self, patient_id: str) -> Stay | None:
        primary = self._ids.get(patient_id)
        return self._stays.get(primary) if primary else None

    def location_of(self, bed_id: str) -> str | None:
        """The census location a gateway bed id names (None: none, or ambiguous)."""
        if self._names is None:
            names: dict[str, str | None] = {}
            for location in self._beds:
                for name in bed_names(location):
                    names[name] = None if name in names and names[name] != location else location
            self._names = names
        return self._names.get(bed_id.casefold())

    def at_bed(self, bed_id: str) -> Stay | None:
        location = self.location_of(bed_id)
        return self._stays.get(self._beds[location]) if location else None

    def patient_at(self, bed_id: str, paired: str | None) -> str | None:
        """The paired patient if the census has them in that bed, else None (quarantine)."""
        if paired is None:
            return None
        stay = self.at_bed(bed_id)
        return stay.patient_id if stay is not None and stay.named_by(paired) else None

    # -- changes -----------------------------------------------------------------------
    def apply(self, event: CensusEvent, now_ms: int = 0) -> Outcome:
        ids = event.patient_ids[:MAX_IDENTIFIERS]
        known = {self._ids[i] for i in ids if i in self._ids}
        if len(known) > 1:
            return Outcome(False, f"conflicting identifiers: {', '.join(ids)} name patients {', '.join(sorted(known))}")
        primary = known.pop() if known else ids[0]
        stay = self._stays.get(primary)
        trigger, location = event.trigger, _loc(event.location)
        if trigger == "A13":
            return self._readmit(primary, ids, location, event.visit, now_ms)
        if trigger == "A01":
            if stay is not None and stay.location != location:
                return Outcome(False, f"A01 for patient {primary}, who is in bed {stay.location} (a move is A02)")
            if stay is None and len(self._stays) >= self.max_stays:
                return Outcome(False, f"census full ({self.max_stays} patients, bound)")
            return self._occupy(Stay(primary, ids, location, event.visit, now_ms), "admit", stay)
        if stay is None:
            return Outcome(False, f"{trigger} for patient {primary}, who is not in the census (out of order?)")
        merged = tuple(dict.fromkeys((*stay.identifiers, *ids)))[:MAX_IDENTIFIERS]
        if trigger == "A02":
            return self._occupy(Stay(primary, merged, location, event.visit or stay.visit, now_ms), "transfer", stay)
        if trigger == "A08":
            self._put(replace(stay, identifiers=merged, visit=event.visit or stay.visit))
            return Outcome(True, patient_id=primary)
        return self._vacate(stay, "discharge" if trigger == "A03" else "admit cancelled")

    def _occupy(self, stay: Stay, why: str, previous: Stay | None) -> Outcome:
        changes: list[BedChange] = []
        if previous is not None and previous.location == stay.location:
            self._put(replace(stay, since_ms=previous.since_ms))
            return Outcome(True, patient_id=stay.patient_id)  # a repeat: nothing moves
        occupant = self._beds.get(stay.location)
        if previous is not None:
            self._remove(previous)
            changes.append(BedChange(previous.location, previous.patient_id, None, why))
        if occupant is not None:
            self._remove(self._stays[occupant])
            why_out = f"displaced by {why} of {stay.patient_id}"
            changes.append(BedChange(stay.location, occupant, stay.patient_id, why_out))
        else:
            changes.append(BedChange(stay.location, None, stay.patient_id, why))
        self._put(stay)
        return Outcome(True, changes=tuple(changes), patient_id=stay.patient_id)

    def _vacate(self, stay: Stay, why: str) -> Outcome:
        self._remove(stay)
        self._discharged[stay.patient_id] = stay
        while len(self._discharged) > MAX_DISCHARGED:
            self._discharged.popitem(last=False)
        return Outcome(
            True, changes=(BedChange(stay.location, stay.patient_id, None, why),), patient_id=stay.patient_id
        )

    def _readmit(self, primary: str, ids: tuple[str, ...], location: str, visit: str, now_ms: int) -> Outcome:
        if primary in self._stays:
            return Outcome(False, f"A13 for patient {primary}, who was not discharged")
        before = self._discharged.pop(primary, None)
        merged = tuple(dict.fromkeys((*(before.identifiers if before else ()), *ids)))[:MAX_IDENTIFIERS]
        # An identifier remembered from before the discharge that names someone admitted since stays theirs.
        merged = tuple(i for i in merged if self._ids.get(i, primary) == primary)
        return self._occupy(Stay(primary, merged, location, visit, now_ms), "discharge cancelled", None)

    def _put(self, stay: Stay) -> None:
        self._stays[stay.patient_id] = stay
        self._beds[stay.location] = stay.patient_id
        for ident in stay.identifiers:
            self._ids[ident] = stay.patient_id
        self._names = None

    def _remove(self, stay: Stay) -> None:
        self._stays.pop(stay.patient_id, None)
        if self._beds.get(stay.location) == stay.patient_id:
            del self._beds[stay.location]
        for ident in stay.identifiers:
            if self._ids.get(ident) == stay.patient_id:
                del self._ids[ident]
        self._names = None

    # -- persisted form ----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def row(s: Stay) -> dict[str, Any]:
            ids = list(s.identifiers)
            return {
                "patient": s.patient_id,
                "ids": ids,
                "location": s.location,
                "visit": s.visit,
                "since_ms": s.since_ms,
            }

        discharged = [row(s) for s in self._discharged.values()]
        return {"v": FORMAT, "stays": [row(s) for s in self.stays()], "discharged": discharged}

    @classmethod
    def from_json(cls, data: Any, source: str = "census") -> Census:
        census = cls()
        try:
            if data.get("v") != FORMAT:
                raise CensusError(f"{source}: census format {data.get('v')!r}, expected {FORMAT}")
            for row in data["stays"]:
                census._put(_stay(row))
            for row in data.get("discharged", []):
                stay = _stay(row)
                census._discharged[stay.patient_id] = stay
        except (AttributeError, KeyError, TypeError) as exc:
            raise CensusError(f"{source}: not a census file ({type(exc).__name__}: {exc})") from None
        return census


def _stay(row: Any) -> Stay:
    ids = tuple(map(str, row["ids"]))
    return Stay(str(row["patient"]), ids, str(row["location"]), str(row["visit"]), int(row.get("since_ms", 0)))


def check_pairing(census: Census, bed_id: str, patient: str | None, wristband: str | None) -> str:
    """The census patient a device at `bed_id` is paired to; PairingRefused when the bed
    has no census patient or the given patient id / wristband string is not theirs."""
    stay = census.at_bed(bed_id)
    if stay is None:
        raise PairingRefused(
            f"bed {bed_id!r} has no admitted patient in the census; pair after the admission (ADT A01)"
        )
    for given, what in ((patient, "patient"), (wristband, "wristband")):
        if given is not None and not stay.named_by(given.strip()):
            raise PairingRefused(f"{what} {given!r} is not the patient in bed {bed_id!r} (census: {stay.patient_id})")
    return stay.patient_id
