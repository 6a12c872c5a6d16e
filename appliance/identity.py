"""Claims a message makes about whose reading it is, checked against the pairing.

A device family may put on a reading what the device says about the patient and
the bed (a message-based family sends them as `patient:<id>` and `location:<unit^room^bed>` flags). They
are compared with the registry's pairing of the device and removed (the
observation carries the paired `patient_id`; the claim is evidence, not data):

- Only a device paired with a patient is checked: an unpaired device's readings
  are quarantined already.
- Patient: a mismatch when the reading names patients and the paired one is
  none of them.
- Bed: a mismatch when the location names a bed and the paired bed is neither
  that bed nor the location written whole (`unit^room^bed`, or its non-empty
  parts joined by `-`, `/` or a space), compared without case.

A mismatch quarantines the observation and flags it `patient_mismatch`, which the
gateway grades invalid: the value is kept for the record but is never taken as
this bed's patient by the alarm engine. The device gets one `patient_mismatch`
technical event while it lasts (edge-triggered), so a clinician learns that its
values are not being used.

Also resolved here: `corrects_origin:<origin>` (a correction naming the reading
it replaces by that reading's `origin`) becomes `corrects:<obs_id>` of that reading.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from appliance.core.model import Reading, TechnicalEvent
from appliance.core.vocab import TechnicalKind

__all__ = ["MISMATCH_FLAG", "IdentityCheck", "bed_names"]

MISMATCH_FLAG: Final = "patient_mismatch"
_PATIENT: Final = "patient:"
_LOCATION: Final = "location:"
_CORRECTS: Final = "corrects_origin:"
_CLAIMS: Final = (_PATIENT, _LOCATION, _CORRECTS)


def bed_names(location: str) -> set[str]:
    """The names a bed id may take for a location `unit^room^bed` (PV1-3; casefolded):
    the bed alone, the whole location, or its non-empty parts joined by `-`, `/`
    or a space. Empty when the location names no bed."""
    parts = location.split("^")
    bed = parts[-1] if len(parts) == 3 else ""  # PV1-3: point of care ^ room ^ bed
    if not bed:
        return set()
    named = [p for p in parts if p]
    return {n.casefold() for n in (bed, location, "-".join(named), "/".join(named), " ".join(named))}


def mismatch(flags: frozenset[str], patient_id: str | None, bed_id: str, aliases: tuple[str, ...] = ()) -> str:
    """Why the claims in `flags` do not fit the pairing; "" when they fit (or there are none)."""
    if patient_id is None:
        return ""
    patients = sorted(f.removeprefix(_PATIENT) for f in flags if f.startswith(_PATIENT))
    if patients and patient_id not in patients and not set(aliases) & set(patients):
        return f"device reports patient {', '.join(patients)[:80]}, bed is paired with {patient_id}"
    for flag in flags:
        if flag.startswith(_LOCATION):
            beds = bed_names(flag.removeprefix(_LOCATION))
            if beds and bed_id.casefold() not in beds:
                return f"device reports location {flag.removeprefix(_LOCATION)[:80]}, paired bed is {bed_id}"
    return ""


@dataclass(slots=True)
class IdentityCheck:
    mismatches: int = 0  # readings quarantined for a mismatch
    _active: set[str] = field(default_factory=set)  # devices with a mismatch raised

    def judge(
        self,
        reading: Reading,
        ctx_ids: tuple[str, str, str | None],
        received: datetime,
        obs_id_of: Callable[[Reading], str],
        aliases: tuple[str, ...] = (),
    ) -> tuple[frozenset[str], bool, list[TechnicalEvent]]:
        """(flags without the claims, mismatch, events) for `reading` from the device
        `ctx_ids` = (device id, bed id, patient id); `aliases`: the patient's other
        identifiers (the census's: a wristband id, a second MRN), which match too."""
        flags = reading.flags
        if not any(f.startswith(_CLAIMS) for f in flags):
            return flags, False, []  # a reading that claims nothing neither raises nor ends a mismatch
        why = mismatch(flags, ctx_ids[2], ctx_ids[1], aliases)
        kept = {f for f in flags if not f.startswith(_CLAIMS)}
        for flag in flags:
            if flag.startswith(_CORRECTS) and flag.removeprefix(_CORRECTS):
                # Same label and time: a correction repeats the corrected row's code and time.
                original = replace(reading, origin=flag.removeprefix(_CORRECTS))
                kept.add(f"corrects:{obs_id_of(original)}")
        if why:
            kept.add(MISMATCH_FLAG)
            self.mismatches += 1
        return frozenset(kept), bool(why), self._edge(ctx_ids, why, received)

    def _edge(self, ctx_ids: tuple[str, str, str | None], why: str, received: datetime) -> list[TechnicalEvent]:
        device_id, bed_id, _ = ctx_ids
        if bool(why) == (device_id in self._active):
            return []
        if why:
            self._active.add(device_id)
        else:
            self._active.discard(device_id)
        detail = why or "device reports the paired patient and bed again"
        kind = TechnicalKind.PATIENT_MISMATCH
        return [TechnicalEvent(device_id, kind, active=bool(why), detail=detail, time=received, bed_id=bed_id)]
