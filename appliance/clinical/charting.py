"""What goes to the chart: the pure decision of the clinical plane.

An observation is charted when it is paired (a patient, not quarantined), its
value is not invalid, its patient has consented, and it is the first of its
(patient, device, metric) within `interval_s` of the last one charted, by the
observation's own time (so a meter's stored records caught up at once are thinned
the same way as live ones). Everything else stays on the telemetry plane only.

`consented` is the predicate the consent gate (census/consent component) plugs in;
until it does, `every_paired_patient_consented` stands in, by name. An observation
that gate already marked `consent_withheld` is refused whatever the predicate says.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from appliance.clinical.fhir import BP_PARTS, Limits
from appliance.core.model import Observation
from appliance.core.vocab import Priority, Quality
from rules.spec import RuleSet

__all__ = ["BloodPressurePairs", "ChartGate", "ConsentPredicate", "every_paired_patient_consented", "limits_for"]

ConsentPredicate = Callable[[str], bool]
MAX_KEYS: Final = 4096  # (patient, device, metric) remembered; the least recent is forgotten
WITHHELD_FLAG: Final = "consent_withheld"  # set by the consent gate on observations it withholds


def every_paired_patient_consented(patient_id: str) -> bool:
    """Stand-in until the consent gate lands: a paired patient counts as consented."""
    return True


def limits_for(ruleset: RuleSet, bed_id: str) -> Limits:
    """The limit rules' thresholds at a bed, per metric (for Observation.interpretation)."""
    below: dict[str, list[tuple[float, Priority]]] = {}
    above: dict[str, list[tuple[float, Priority]]] = {}
    for rule in ruleset.rules:
        if rule.kind != "limit" or not rule.metric:
            continue
        hi, lo, _ = rule.threshold(bed_id)
        if lo is not None:
            below.setdefault(rule.metric, []).append((lo, Priority(rule.priority)))
        if hi is not None:
            above.setdefault(rule.metric, []).append((hi, Priority(rule.priority)))
    frozen: Callable[[dict[str, list[tuple[float, Priority]]]], Mapping[str, Sequence[tuple[float, Priority]]]]
    frozen = lambda d: {k: tuple(v) for k, v in d.items()}  # noqa: E731
    return Limits(frozen(below), frozen(above))


@dataclass(slots=True)
class ChartGate:
    interval_s: float = 60.0
    consented: ConsentPredicate = every_paired_patient_consented
    _last: OrderedDict[tuple[str, str, str], float] = field(default_factory=OrderedDict)

    def refusal(self, obs: Observation) -> str:
        """'' to chart `obs` now (and remember it), else why not."""
        if obs.patient_id is None or obs.quarantine:
            return "unpaired"
        if obs.quality == Quality.INVALID:
            return "invalid"
        if WITHHELD_FLAG in obs.flags or not self.consented(obs.patient_id):
            return "not consented"
        key = (obs.patient_id, obs.device_id, obs.metric)
        t = obs.time.timestamp()
        last = self._last.get(key)
        if last is not None and abs(t - last) < self.interval_s:
            return "interval"
        self._last[key] = t
        self._last.move_to_end(key)
        if len(self._last) > MAX_KEYS:
            self._last.popitem(last=False)
        return ""


@dataclass(slots=True)
class BloodPressurePairs:
    """Charted systolic and diastolic parts of one measurement (same device, same time)
    make one vital-signs blood pressure panel: `add` returns the pair once it is whole."""

    _parts: dict[str, dict[str, Observation]] = field(default_factory=dict)

    def add(self, obs: Observation) -> tuple[Observation, Observation] | None:
        if obs.metric not in BP_PARTS:
            return None
        if len(self._parts) >= MAX_KEYS:
            self._parts.clear()  # devices, not readings: only a misconfiguration gets here
        parts = self._parts.setdefault(obs.device_id, {})
        parts[obs.metric] = obs
        systolic, diastolic = (parts.get(m) for m in BP_PARTS)
        if systolic is None or diastolic is None or systolic.time != diastolic.time:
            return None
        del self._parts[obs.device_id]
        return systolic, diastolic
