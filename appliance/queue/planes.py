"""Which store class an observation belongs to: the telemetry, quarantine and consent planes.

- An observation without a census-verified patient (`quarantine`) goes to
  `unpaired`, which the uplink sends on the `quarantine` topic (never on
  `telemetry`); once delivered the row becomes `held` and stays on the box until
  an operator releases it to the patient (`bedside devices release`) or it expires
  (appliance/queue/held.py).
- One flagged `consent_withheld` (appliance/clinical/consent.py) goes to `withheld`:
  never sent, purged after `withheld_ttl_s`.
- Everything else is telemetry, as before.

Pure; order within each class is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from appliance.core.model import Observation
from appliance.queue.schema import RecordClass

__all__ = ["WITHHELD_FLAG", "planes"]

WITHHELD_FLAG: Final = "consent_withheld"  # = appliance.clinical.consent.WITHHELD_FLAG (no import: layering)


def planes(batch: Sequence[Observation], quarantine: bool = True) -> list[tuple[RecordClass, list[Observation]]]:
    """The batch by class; `quarantine` False: unpaired observations stay telemetry (the
    wire before issue 21: marked only by the quarantine bit)."""
    telemetry: list[Observation] = []
    unpaired: list[Observation] = []
    withheld: list[Observation] = []
    for obs in batch:
        if obs.quarantine and quarantine:
            unpaired.append(obs)
        elif WITHHELD_FLAG in obs.flags:
            withheld.append(obs)
        else:
            telemetry.append(obs)
    out = [(RecordClass.TELEMETRY, telemetry), (RecordClass.UNPAIRED, unpaired), (RecordClass.WITHHELD, withheld)]
    return [(cls, part) for cls, part in out if part]
