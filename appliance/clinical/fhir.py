"""Canonical records -> FHIR R4 resources (plain JSON dicts), and a transaction Bundle.

- `Observation` from an observation: MDC coding always, LOINC and the vital-signs
  profile where `codes.py` maps one, UCUM `valueQuantity`, `effectiveDateTime` (the
  observation's time), `issued` (received), subject (the patient, referenced by
  identifier: ids typed at a bed are not FHIR ids), device, status from quality
  (valid -> final, questionable -> preliminary), interpretation L/H (LL/HH for a
  high-priority limit) when the value is beyond an alarm limit of the bed's rules.
- `Device` per device, `DeviceMetric` per (device, metric).
- Alarms: an `Observation` of `MDC_EVT_ALARM` with IHE ACM's facets as components.
  R4 has no alarm resource (DeviceAlert is being drafted for a later release).
  IHE PCD ACM's Report Alert [PCD-04] is itself an observation report (ORU^R40:
  event identification, source, phase, state, inactivation state, priority and
  type as OBX facets, one alert id across its phases), so an Observation with those
  facets as components, one id per alarm updated as its phase changes, maps it one
  to one. Communication / CommunicationRequest model ACM's dissemination to a
  person (the Alert Manager's job, not the reporter's), DetectedIssue is clinical
  decision support about orders, Flag a standing warning about a patient.

Pure: no I/O, no clock. Ids are the gateway's own ids where they are valid FHIR
ids, else a digest, so a resend is the same resource (the Bundle uses PUT).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from appliance.clinical.codes import LOINC, MDC, UCUM, VITAL_SIGNS_CATEGORY, loinc_for
from appliance.core.model import AlarmEvent, Observation, format_time
from appliance.core.vocab import AlarmEventState, Priority, Quality

__all__ = [
    "Limits",
    "PatientRef",
    "alarm_resource",
    "blood_pressure_panel",
    "device_metric_resource",
    "device_resource",
    "fhir_id",
    "observation_resource",
    "transaction_bundle",
]

_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RULE_SYSTEM: Final = "urn:bedside:rule"
DEVICE_SYSTEM: Final = "urn:bedside:device"
OBS_SYSTEM: Final = "urn:bedside:obs-id"
ALARM_SYSTEM: Final = "urn:bedside:alarm-id"
_STATUS: Final = {Quality.VALID: "final", Quality.QUESTIONABLE: "preliminary", Quality.INVALID: "cancelled"}
# AlarmEventState -> ACM facets: (event phase, alarm state, inactivation state).
_ACM_PHASE: Final = {
    AlarmEventState.ACTIVE: ("start", "active", "enabled"),
    AlarmEventState.ACKNOWLEDGED: ("update", "active", "acknowledged"),
    AlarmEventState.AUDIO_PAUSED: ("update", "active", "audio-paused"),
    AlarmEventState.LATCHED: ("end", "latched", "enabled"),
    AlarmEventState.CLEARED: ("end", "inactive", "enabled"),
    AlarmEventState.ESCALATED: ("escalate", "active", "enabled"),
}
_ACM_PRIORITY: Final = {Priority.HIGH: "PH", Priority.MEDIUM: "PM", Priority.LOW: "PL"}


def fhir_id(text: str) -> str:
    """`text` if it is a valid FHIR id, else a stable digest of it."""
    return text if _ID.match(text) else "h" + hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class PatientRef:
    """How patients are referenced: by identifier in the hospital's system (MRN)."""

    system: str = "urn:bedside:patient-id"

    def ref(self, patient_id: str) -> dict[str, Any]:
        return {"type": "Patient", "identifier": {"system": self.system, "value": patient_id}}


@dataclass(frozen=True, slots=True)
class Limits:
    """Alarm limits per metric as (value, priority) lists, for `interpretation`."""

    below: Mapping[str, Sequence[tuple[float, Priority]]]
    above: Mapping[str, Sequence[tuple[float, Priority]]]

    def interpret(self, metric: str, value: float | None) -> str:
        """'' inside every limit; L / H beyond one, LL / HH beyond a high-priority one."""
        if value is None:
            return ""
        low = [p for limit, p in self.below.get(metric, ()) if value < limit]
        if low:
            return "LL" if Priority.HIGH in low else "L"
        high = [p for limit, p in self.above.get(metric, ()) if value > limit]
        if high:
            return "HH" if Priority.HIGH in high else "H"
        return ""


NO_LIMITS: Final = Limits({}, {})


def _mdc(metric: str, code: int) -> dict[str, str]:
    return {"system": MDC, "code": str(code), "display": metric}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if unit:
        out |= {"unit": unit, "system": UCUM, "code": unit}
    return out


def device_ref(device_id: str) -> dict[str, str]:
    return {"reference": f"Device/{fhir_id(device_id)}", "display": device_id}


def observation_resource(
    obs: Observation, patients: PatientRef = PatientRef(), limits: Limits = NO_LIMITS
) -> dict[str, Any]:
    mapped = loinc_for(obs.metric)
    codings = [{"system": LOINC, "code": c.code, "display": c.display} for c in mapped.codings] if mapped else []
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir_id(obs.obs_id),
        "identifier": [{"system": OBS_SYSTEM, "value": obs.obs_id}],
        "status": _STATUS[obs.quality],
        "code": {"coding": [*codings, _mdc(obs.metric, obs.code)], "text": obs.metric},
        "effectiveDateTime": format_time(obs.time),
        "issued": format_time(obs.received),
        "device": device_ref(obs.device_id),
    }
    if mapped and mapped.profile:
        res["meta"] = {"profile": [mapped.profile_url()]}
    if mapped and mapped.vital_sign:
        res["category"] = [VITAL_SIGNS_CATEGORY]
    if obs.patient_id is not None:
        res["subject"] = patients.ref(obs.patient_id)
    if obs.value is None:
        res["dataAbsentReason"] = {"text": ", ".join(sorted(obs.flags)) or "no value"}
    else:
        res["valueQuantity"] = _quantity(obs.value, obs.unit)
    if code := limits.interpret(obs.metric, obs.value):
        res["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": code}]}]
    return res


# The R4 vital-signs blood pressure profile: a panel with systolic and diastolic components.
BP_PARTS: Final = {"MDC_PRESS_BLD_NONINV_SYS": ("8480-6", "Systolic blood pressure"),
                   "MDC_PRESS_BLD_NONINV_DIA": ("8462-4", "Diastolic blood pressure")}  # fmt: skip


def blood_pressure_panel(
    systolic: Observation, diastolic: Observation, patients: PatientRef = PatientRef()
) -> dict[str, Any]:
    """The 85354-9 panel (profile `bp`) of one measurement: both parts from one device, one time."""
    components = []
    for part in (systolic, diastolic):
        code, display = BP_PARTS[part.metric]
        component: dict[str, Any] = {
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}, _mdc(part.metric, part.code)]}
        }
        if part.value is None:
            component["dataAbsentReason"] = {"text": ", ".join(sorted(part.flags)) or "no value"}
        else:
            component["valueQuantity"] = _quantity(part.value, part.unit)
        components.append(component)
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir_id(f"bp-{systolic.obs_id}"),
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/bp"]},
        "status": _STATUS[max(systolic.quality, diastolic.quality, key=list(Quality).index)],
        "category": [VITAL_SIGNS_CATEGORY],
        "code": {
            "coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}],
            "text": "Blood pressure",
        },
        "effectiveDateTime": format_time(systolic.time),
        "issued": format_time(max(systolic.received, diastolic.received)),
        "device": device_ref(systolic.device_id),
        "derivedFrom": [{"reference": f"Observation/{fhir_id(o.obs_id)}"} for o in (systolic, diastolic)],
        "component": components,
    }
    if systolic.patient_id is not None:
        res["subject"] = patients.ref(systolic.patient_id)
    return res


def device_resource(device_id: str, protocol: str, bed_id: str, patient_id: str | None,
                    patients: PatientRef = PatientRef()) -> dict[str, Any]:  # fmt: skip
    res: dict[str, Any] = {
        "resourceType": "Device",
        "id": fhir_id(device_id),
        "identifier": [{"system": DEVICE_SYSTEM, "value": device_id}],
        "status": "active",
        "deviceName": [{"name": device_id, "type": "user-friendly-name"}],
        "type": {"text": protocol},
        "location": {"display": bed_id},
    }
    if patient_id is not None:
        res["patient"] = patients.ref(patient_id)
    return res


def device_metric_resource(device_id: str, metric: str, code: int, unit: str) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "DeviceMetric",
        "id": fhir_id(f"{device_id}.{code}"),
        "type": {"coding": [_mdc(metric, code)], "text": metric},
        "source": device_ref(device_id),
        "operationalStatus": "on",
        "category": "measurement",
    }
    if unit:
        res["unit"] = {"coding": [{"system": UCUM, "code": unit, "display": unit}], "text": unit}
    return res


def _facet(code: int, name: str, value: str) -> dict[str, Any]:
    return {"code": {"coding": [_mdc(name, code)]}, "valueCodeableConcept": {"text": value}}


def alarm_resource(alarm: AlarmEvent, patients: PatientRef = PatientRef()) -> dict[str, Any]:
    phase, state, inactivation = _ACM_PHASE[AlarmEventState(alarm.state)]
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir_id(alarm.alarm_id),
        "identifier": [{"system": ALARM_SYSTEM, "value": alarm.alarm_id}],
        # One resource per alarm, replaced at each phase: final once it has ended.
        "status": "final" if state == "inactive" else "preliminary",
        "code": {"coding": [_mdc("MDC_EVT_ALARM", 196616)], "text": alarm.message or alarm.rule_id},
        "effectiveDateTime": format_time(alarm.time),
        "valueCodeableConcept": {
            "coding": [{"system": RULE_SYSTEM, "code": alarm.rule_id}],
            "text": alarm.message or alarm.rule_id,
        },
        "component": [
            _facet(68481, "MDC_ATTR_EVENT_PHASE", phase),
            _facet(68482, "MDC_ATTR_ALARM_STATE", state),
            _facet(68483, "MDC_ATTR_ALARM_INACTIVATION_STATE", inactivation),
            _facet(68484, "MDC_ATTR_ALARM_PRIORITY", _ACM_PRIORITY[Priority(alarm.priority)]),
            _facet(68485, "MDC_ATTR_ALERT_TYPE", "SP" if alarm.kind == "physiological" else "ST"),
        ],
    }
    if alarm.patient_id is not None:
        res["subject"] = patients.ref(alarm.patient_id)
    if alarm.device_id is not None:
        res["device"] = device_ref(alarm.device_id)
    if alarm.observation_ids:
        res["derivedFrom"] = [{"reference": f"Observation/{fhir_id(i)}"} for i in alarm.observation_ids]
    return res


def transaction_bundle(resources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle: one PUT per resource (idempotent: a resend updates, never
    duplicates); the last version of a resource wins, as a PUT sequence would."""
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in resources:
        latest[(str(r["resourceType"]), str(r["id"]))] = r
    entries = [
        {"resource": dict(r), "request": {"method": "PUT", "url": f"{kind}/{rid}"}} for (kind, rid), r in latest.items()
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
