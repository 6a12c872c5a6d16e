"""FHIR R4 output: every mapped metric of every family gives an Observation and a
DeviceMetric that fhir.resources (R4 4.0.1) accepts; the vital-signs profile's own
rules hold where it is claimed; alarms, devices and the Bundle validate too.
fhir.resources checks structure, cardinality and data types but not required code
bindings, so those (Observation.status) are asserted here."""

from datetime import UTC, datetime, timedelta

import fhir.resources
import pytest
from fhir.resources.bundle import Bundle
from fhir.resources.device import Device
from fhir.resources.devicemetric import DeviceMetric
from fhir.resources.observation import Observation as FhirObservation

from appliance.clinical.charting import ChartGate, limits_for
from appliance.clinical.codes import LOINC, MDC, UCUM, loinc_for
from appliance.clinical.fhir import (
    PatientRef,
    alarm_resource,
    device_metric_resource,
    device_resource,
    fhir_id,
    observation_resource,
    transaction_bundle,
)
from appliance.core.model import AlarmEvent, Observation
from appliance.core.plausible import plausible_range
from appliance.core.vocab import AlarmEventState, Priority, Quality
from drivers import registry
from rules.spec import DEFAULT_RULES_PATH, load_rules

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
RULES = load_rules(DEFAULT_RULES_PATH)
PROFILE_CODES = {"heartrate": "8867-4", "resprate": "9279-1", "oxygensat": "2708-6", "bodytemp": "8310-5",
                 "bodyweight": "29463-7", "bodyheight": "8302-2", "bmi": "39156-5"}  # fmt: skip
# The R4 vital-signs profiles' units (http://hl7.org/fhir/R4/observation-vitalsigns.html).
PROFILE_UNITS = {"heartrate": {"/min"}, "resprate": {"/min"}, "oxygensat": {"%"}, "bodytemp": {"Cel", "[degF]"},
                 "bodyweight": {"kg", "g", "[lb_av]"}, "bodyheight": {"cm", "[in_i]"}, "bmi": {"kg/m2"}}  # fmt: skip


# R4 ObservationStatus (required binding), which fhir.resources does not check.
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error",
                      "unknown"}  # fmt: skip


def every_term():
    seen: dict[tuple[str, int, str], str] = {}
    for family in registry.FAMILIES:
        for label, term in family.table().items():
            seen.setdefault((term.metric, term.code, term.unit), f"{family.name}:{label}")
    return sorted(seen.items())


TERMS = every_term()


def test_fhir_resources_is_r4():
    assert fhir.resources.__fhir_version__ == "4.0.1"
    assert len(TERMS) > 50  # every family's table is here


def obs_for(metric, code, unit, value=None, quality=Quality.VALID, patient="MRN-1", **kw):
    if value is None:
        span = plausible_range(metric, unit)
        value = (span[0] + span[1]) / 2 if span else 1.0
    return Observation(
        f"{code:032x}"[-32:], metric, code, value, unit or "mmol/L", T0, T0 + timedelta(seconds=1), quality,
        kw.get("device", "dev-1"), "ICU-1", patient, frozenset(), patient is None,
    )  # fmt: skip


@pytest.mark.parametrize(("term", "where"), TERMS, ids=[f"{t[0]}-{t[2] or 'msg'}" for t, _ in TERMS])
def test_every_mapped_metric_of_every_family_is_a_valid_r4_observation(term, where):
    metric, code, unit = term
    obs = obs_for(metric, code, unit)
    res = observation_resource(obs, PatientRef("urn:oid:1.2.3"), limits_for(RULES, "ICU-1"))
    parsed = FhirObservation.parse_obj(res)  # raises on anything R4 does not allow
    assert parsed.status == "final" and parsed.effectiveDateTime is not None
    mdc = [c for c in res["code"]["coding"] if c["system"] == MDC]
    assert mdc == [{"system": MDC, "code": str(code), "display": metric}]
    q = res["valueQuantity"]
    assert q["value"] == obs.value and q["system"] == UCUM and q["code"] == obs.unit
    assert res["subject"]["identifier"] == {"system": "urn:oid:1.2.3", "value": "MRN-1"}
    assert res["device"]["reference"] == "Device/dev-1"
    mapped = loinc_for(metric)
    if mapped and mapped.profile:  # the vital-signs profile's constraints, beyond the base resource
        assert res["meta"]["profile"] == [f"http://hl7.org/fhir/StructureDefinition/{mapped.profile}"]
        assert res["category"][0]["coding"][0]["code"] == "vital-signs"
        assert {"system": LOINC, "code": PROFILE_CODES[mapped.profile]} | {} in [
            {"system": c["system"], "code": c["code"]} for c in res["code"]["coding"]
        ]
        assert q["code"] in PROFILE_UNITS[mapped.profile], (metric, q["code"])
    metric_res = device_metric_resource("dev-1", metric, code, unit)
    DeviceMetric.parse_obj(metric_res)
    assert metric_res["type"]["coding"][0]["code"] == str(code)


def test_vital_signs_are_claimed_for_the_common_vitals():
    for metric in ("MDC_PULS_OXIM_SAT_O2", "MDC_PULS_OXIM_PULS_RATE", "MDC_ECG_HEART_RATE", "MDC_RESP_RATE",
                   "MDC_TEMP_BODY", "MDC_MASS_BODY_ACTUAL"):  # fmt: skip
        mapped = loinc_for(metric)
        assert mapped is not None and mapped.profile, metric


def test_status_follows_quality_and_a_missing_value_has_a_reason():
    questionable = observation_resource(obs_for("MDC_PULS_OXIM_SAT_O2", 150456, "%", quality=Quality.QUESTIONABLE))
    assert questionable["status"] == "preliminary" in OBSERVATION_STATUS
    under = obs_for("MDC_PULS_OXIM_SAT_O2", 150456, "%", quality=Quality.QUESTIONABLE)
    res = observation_resource(Observation(**{**{f: getattr(under, f) for f in under.__dataclass_fields__},
                                              "value": None, "flags": frozenset({"under_range"})}))  # fmt: skip
    FhirObservation.parse_obj(res)
    assert "valueQuantity" not in res and res["dataAbsentReason"]["text"] == "under_range"


@pytest.mark.parametrize(
    ("metric", "code", "value", "expected"),
    [
        ("MDC_PULS_OXIM_SAT_O2", 150456, 97.0, None),
        ("MDC_PULS_OXIM_SAT_O2", 150456, 85.0, "L"),  # below spo2-low (medium)
        ("MDC_PULS_OXIM_SAT_O2", 150456, 75.0, "LL"),  # below spo2-desat (high)
        ("MDC_PULS_OXIM_PULS_RATE", 149530, 130.0, "H"),
        ("MDC_PULS_OXIM_PULS_RATE", 149530, 45.0, "L"),
    ],
)
def test_interpretation_from_the_beds_alarm_limits(metric, code, value, expected):
    res = observation_resource(obs_for(metric, code, "/min" if "RATE" in metric else "%", value=value),
                               limits=limits_for(RULES, "ICU-1"))  # fmt: skip
    FhirObservation.parse_obj(res)
    got = res.get("interpretation", [{"coding": [{"code": None}]}])[0]["coding"][0]["code"]
    assert got == expected


@pytest.mark.parametrize("state", list(AlarmEventState))
@pytest.mark.parametrize("priority", list(Priority))
def test_alarms_are_acm_observations(state, priority):
    alarm = AlarmEvent("a1b2", "spo2-low", "ICU-1", priority, "physiological", state, T0, ("obs-1", "obs-2"),
                       "SpO2 low", "dev-1", "MRN-1")  # fmt: skip
    res = alarm_resource(alarm)
    FhirObservation.parse_obj(res)
    assert res["status"] in OBSERVATION_STATUS
    facets = {c["code"]["coding"][0]["display"]: c["valueCodeableConcept"]["text"] for c in res["component"]}
    assert facets["MDC_ATTR_ALARM_PRIORITY"] == {"high": "PH", "medium": "PM", "low": "PL"}[priority]
    assert facets["MDC_ATTR_ALERT_TYPE"] == "SP" and res["code"]["coding"][0]["code"] == "196616"
    assert res["id"] == "a1b2" and [d["reference"] for d in res["derivedFrom"]] == ["Observation/obs-1",
                                                                                   "Observation/obs-2"]  # fmt: skip
    assert (res["status"] == "final") == (state == AlarmEventState.CLEARED)


def test_devices_and_a_transaction_bundle_validate():
    dev = device_resource("spo2 bed/3", "masimo", "ICU-1", "MRN-1")
    Device.parse_obj(dev)
    assert dev["id"] == fhir_id("spo2 bed/3") != "spo2 bed/3"  # not a FHIR id: a stable digest
    obs = [obs_for("MDC_PULS_OXIM_SAT_O2", 150456, "%", device="spo2 bed/3")]
    resources = [dev, observation_resource(obs[0]), observation_resource(obs[0])]
    bundle = transaction_bundle(resources)
    Bundle.parse_obj(bundle)
    assert bundle["type"] == "transaction" and len(bundle["entry"]) == 2  # the same resource once
    assert all(e["request"]["method"] == "PUT" for e in bundle["entry"])
    assert resources[1]["device"]["reference"] == f"Device/{dev['id']}"


def test_the_chart_gate():
    gate = ChartGate(60.0, consented=lambda p: p != "MRN-NO")
    o = lambda t, **kw: Observation(  # noqa: E731
        "x", "MDC_PULS_OXIM_SAT_O2", 150456, 97.0, "%", T0 + timedelta(seconds=t), T0, kw.get("q", Quality.VALID),
        kw.get("dev", "d"), "ICU-1", kw.get("p", "MRN-1"), frozenset(), kw.get("p", "MRN-1") is None,
    )  # fmt: skip
    assert gate.refusal(o(0, p=None)) == "unpaired"
    assert gate.refusal(o(0, q=Quality.INVALID)) == "invalid"
    assert gate.refusal(o(0, p="MRN-NO")) == "not consented"
    withheld = Observation(**{**{f: getattr(o(0), f) for f in Observation.__dataclass_fields__},
                              "flags": frozenset({"consent_withheld"})})  # fmt: skip
    assert gate.refusal(withheld) == "not consented"
    assert [gate.refusal(o(t)) for t in (0, 1, 59, 60, 61, 125)] == ["", "interval", "interval", "", "interval", ""]
    assert gate.refusal(o(1, dev="other")) == ""  # per device


def test_the_validation_bites():
    """fhir.resources refuses what R4 does not allow, so the tests above can fail."""
    from pydantic import ValidationError

    good = observation_resource(obs_for("MDC_PULS_OXIM_SAT_O2", 150456, "%"))
    no_code = {k: v for k, v in good.items() if k != "code"}
    for broken in ({**good, "effectiveDateTime": "yesterday"}, no_code, {**good, "valueQuantity": {"value": "x"}}):
        with pytest.raises(ValidationError):
            FhirObservation.parse_obj(broken)
    with pytest.raises(ValidationError):
        DeviceMetric.parse_obj({k: v for k, v in device_metric_resource("d", "M", 1, "%").items() if k != "category"})


def test_a_blood_pressure_measurement_is_a_vital_signs_panel():
    from appliance.clinical.charting import BloodPressurePairs
    from appliance.clinical.fhir import blood_pressure_panel

    sys_ = obs_for("MDC_PRESS_BLD_NONINV_SYS", 150021, "mm[Hg]", value=128.0)
    dia = obs_for("MDC_PRESS_BLD_NONINV_DIA", 150022, "mm[Hg]", value=84.0)
    mean = obs_for("MDC_PRESS_BLD_NONINV_MEAN", 150023, "mm[Hg]", value=99.0)
    pairs = BloodPressurePairs()
    assert pairs.add(mean) is None and pairs.add(sys_) is None
    later = Observation(**{**{f: getattr(dia, f) for f in Observation.__dataclass_fields__},
                           "time": dia.time + timedelta(minutes=5)})  # fmt: skip
    assert pairs.add(later) is None  # another measurement's diastolic
    assert pairs.add(dia) == (sys_, dia) and pairs.add(dia) is None  # once
    panel = blood_pressure_panel(sys_, dia, PatientRef("urn:oid:1.2.3"))
    FhirObservation.parse_obj(panel)
    assert panel["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/bp"]
    assert panel["code"]["coding"][0]["code"] == "85354-9" and "valueQuantity" not in panel
    parts = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in panel["component"]}
    assert parts == {"8480-6": {"value": 128.0, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
                     "8462-4": {"value": 84.0, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}  # fmt: skip
    assert panel["status"] in OBSERVATION_STATUS and panel["subject"]["identifier"]["value"] == "MRN-1"
