"""The checks every pairing passes, whoever asks: `bedside devices pair` and the
web console call the same `pair_device`.

Refused, in one line naming the problem (exit 2 on the command line, a 400 with the
same text in the console): a device the config does not know (with the closest
id), a bed or patient id that is empty, too long or has spaces or control
characters, and a patient that is not the bed's: every device at a bed belongs to
the one patient there, so a second device paired to the bed with another patient
id is a typo or the wrong bed, and filing its data to a chart would be worse than
refusing it.

With a bed census (`[clinical] census_path`, appliance/clinical/census.py) the
patient is the census patient of the bed: a patient id or wristband string given
must be one of theirs, and a bed with no admitted patient cannot be paired.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final

from appliance.core.errors import BedsideInputError
from appliance.core.settings import did_you_mean
from appliance.registry import Pairing, Registry

__all__ = ["PairingRefused", "pair_device"]

_ID: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")


class PairingRefused(BedsideInputError):
    """A pairing that fails a check: one line, nothing written."""


def _check_id(what: str, value: str) -> None:
    if not _ID.fullmatch(value):
        raise PairingRefused(f"{what} {value!r}: must be 1-64 characters without spaces or control characters")


def pair_device(
    registry: Registry,
    device_id: str,
    bed_id: str,
    patient_id: str | None,
    known: Collection[str] | None = None,
    *,
    census_path: str = "",
    wristband: str | None = None,
    by: str = "",
) -> Pairing:
    """Pair after the checks above; `known` = the config's device ids (None: not checked);
    `census_path`: check against the census there; `by`: who asks (for the audit trail)."""
    if known is not None and device_id not in known:
        raise PairingRefused(f"device {device_id!r} is not in the config{did_you_mean(device_id, known)}")
    _check_id("device", device_id)
    _check_id("bed", bed_id)
    if census_path:
        patient_id = _census_patient(census_path, bed_id, patient_id, wristband)
    elif wristband is not None:
        raise PairingRefused("a wristband is checked against the bed census: set [clinical] census_path")
    if patient_id is not None:
        _check_id("patient", patient_id)

    def one_patient_per_bed(current: list[Pairing]) -> None:
        for other in current:
            if other.device_id != device_id and other.bed_id == bed_id and other.patient_id not in (None, patient_id):
                raise PairingRefused(
                    f"bed {bed_id} is paired to patient {other.patient_id} (device {other.device_id}); "
                    f"refusing patient {patient_id} for {device_id} "
                    "(if the patient changed, unpair the bed's devices first)"
                )

    # Checked and written under the registry's lock: two pairings at once cannot both pass.
    check = one_patient_per_bed if patient_id is not None else None
    return registry.pair(device_id, bed_id, patient_id, check, by=by)


def _census_patient(census_path: str, bed_id: str, patient_id: str | None, wristband: str | None) -> str:
    from appliance.clinical.census import Census, CensusError, check_pairing
    from appliance.clinical.files import ClinicalFileError, load_json

    try:
        data = load_json(census_path)
        census = Census() if data is None else Census.from_json(data, census_path)
    except (CensusError, ClinicalFileError) as exc:
        raise PairingRefused(str(exc)) from None
    return check_pairing(census, bed_id, patient_id, wristband)
