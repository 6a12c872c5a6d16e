"""The clinical plane in a gateway's loop: census decisions, pairings ended, consent gating."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from appliance.clinical.consent import WITHHELD_FLAG, Consent
from appliance.clinical.files import load_json
from appliance.clinical.plane import ClinicalPlane
from appliance.clinical.settings import ClinicalSettings
from appliance.core.clock import MonotonicUTC
from appliance.core.model import Observation, Record, TechnicalEvent
from appliance.core.vocab import Quality
from appliance.registry import Registry
from tests.appliance.clinical.adt_messages import event


def obs(patient: str | None, bed: str = "ICU-3") -> Observation:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    return Observation("0" * 32, "MDC_PULS_OXIM_SAT_O2", 150456, 97.0, "%", t, t, Quality.VALID, "spo2", bed,
                       patient, frozenset(), patient is None)  # fmt: skip


def plane_at(tmp_path, **settings):
    published: list[Record] = []
    audited: list[tuple[str, dict[str, object]]] = []
    cfg = ClinicalSettings(census_path=str(tmp_path / "census.json"), consent_path=str(tmp_path / "consent.json"),
                           **settings)  # fmt: skip
    registry = Registry(tmp_path / "registry.json")
    plane = ClinicalPlane.load(cfg, registry, published.append, MonotonicUTC())
    plane.audit = lambda kind, fields: audited.append((kind, dict(fields)))
    return plane, registry, published, audited


def test_a_discharge_ends_the_pairing_quarantines_and_is_audited(tmp_path):
    plane, registry, published, audited = plane_at(tmp_path)
    assert plane.on_adt(event("A01", "MRN-1", "ICU^3^ICU-3")) == ""
    registry.pair("spo2", "ICU-3", "MRN-1")
    registry.refresh()
    assert plane.patient_for("ICU-3", "MRN-1") == "MRN-1"
    assert plane.on_adt(event("A03", "MRN-1")) == ""
    assert plane.patient_for("ICU-3", "MRN-1") is None  # at once, in memory: the next reading is quarantined
    ended = [r for r in published if isinstance(r, TechnicalEvent) and r.kind == "unpaired_by_census"]
    assert len(ended) == 1 and ended[0].device_id == "spo2" and "discharge" in ended[0].detail
    assert (
        "pairing_ended",
        {"device_id": "spo2", "bed_id": "ICU-3", "patient_id": "MRN-1", "reason": "discharge"},
    ) in audited
    plane._save()  # the task's work, off the loop
    assert registry.list()[0].patient_id is None  # re-pairing is needed, even if the patient comes back
    assert load_json(tmp_path / "census.json")["stays"] == []


def test_an_out_of_order_message_is_refused_said_and_audited(tmp_path):
    plane, _, published, audited = plane_at(tmp_path)
    assert "not in the census" in plane.on_adt(event("A03", "MRN-1", control_id="X1"))
    refused = [r for r in published if isinstance(r, TechnicalEvent) and r.kind == "census_refused"]
    assert len(refused) == 1 and "X1" in refused[0].detail
    assert audited[0][0] == "census_refused"


def test_consent_from_adt_gates_upload_and_survives_a_restart(tmp_path):
    plane, _, _, audited = plane_at(tmp_path)
    plane.on_adt(event("A01", "MRN-1", "ICU^3^ICU-3", con="R"))
    assert plane.consent.state("MRN-1") is Consent.WITHHELD
    assert WITHHELD_FLAG in plane.gate(obs("MRN-1")).flags
    assert plane.gate(obs(None)).flags == frozenset()  # quarantine is its own plane, not consent's
    assert ("consent_changed", {"patient_id": "MRN-1", "state": "withheld", "source": "adt"}) in audited
    plane._save()
    again, *_ = plane_at(tmp_path)
    assert again.consent.state("MRN-1") is Consent.WITHHELD and again.census is not None and len(again.census) == 1


async def test_an_operator_consent_change_reaches_the_running_plane(tmp_path):
    from appliance.clinical.files import update_json

    plane, *_, audited = plane_at(tmp_path, consent_poll_s=0.1)
    task = asyncio.create_task(plane.run())
    try:
        update_json(tmp_path / "consent.json", lambda _: {"v": 1, "patients": {
            "MRN-5": {"state": "withheld", "source": "operator:nurse", "time_ms": 1}}})  # fmt: skip
        async with asyncio.timeout(5):
            while plane.consent.state("MRN-5") is not Consent.WITHHELD:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert ("consent_changed", {"patient_id": "MRN-5", "state": "withheld", "source": "operator:nurse"}) in audited


def test_without_a_census_pairings_stand_as_typed(tmp_path):
    registry = Registry(tmp_path / "r.json")
    plane = ClinicalPlane.load(ClinicalSettings(), registry, lambda r: None, MonotonicUTC())
    assert plane.patient_for("ICU-3", "typed") == "typed"
    assert plane.on_adt(event("A01", "MRN-1", "ICU^3^ICU-3")) == "no census on this gateway ([clinical] census_path)"


def test_a_pairing_made_again_before_the_census_ends_it_stands(tmp_path):
    plane, registry, _, _ = plane_at(tmp_path)
    plane.on_adt(event("A01", "MRN-1", "ICU^3^ICU-3"))
    registry.pair("spo2", "ICU-3", "MRN-1")
    registry.refresh()
    plane.on_adt(event("A03", "MRN-1"))
    plane.on_adt(event("A01", "MRN-2", "ICU^3^ICU-3"))
    registry.pair("spo2", "ICU-3", "MRN-2", by="nurse")  # re-paired before the plane's task wrote
    plane._save()
    assert [(p.device_id, p.patient_id, p.by) for p in registry.list()] == [("spo2", "MRN-2", "nurse")]
