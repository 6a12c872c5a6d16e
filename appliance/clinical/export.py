"""`bedside export --format fhir`: the box's records as one FHIR R4 transaction Bundle.

Reads the store (observations and alarms not yet delivered) and the journal's FHIR
resources not yet delivered, and applies the plane's rules: only paired, consented,
not invalid observations, one per patient, device and metric per interval; alarms
of paired, consented patients; a Device and DeviceMetric for each source. Blocking:
a command-line tool, never run by the gateway.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from appliance.clinical.charting import BloodPressurePairs, ChartGate, limits_for
from appliance.clinical.fhir import (
    PatientRef,
    alarm_resource,
    blood_pressure_panel,
    device_metric_resource,
    device_resource,
    observation_resource,
    transaction_bundle,
)
from appliance.config import load_config
from appliance.core.model import AlarmEvent, Observation, Record

__all__ = ["fhir_bundle", "resources_for"]


def resources_for(records: list[Record], gate: ChartGate, patients: PatientRef, ruleset: Any,
                  protocols: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
    """The resources the clinical plane would have made of `records` (in time order)."""
    out: list[dict[str, Any]] = []
    devices: set[str] = set()
    metrics: set[tuple[str, int]] = set()
    bp = BloodPressurePairs()
    observations = sorted((r for r in records if isinstance(r, Observation)), key=lambda o: o.time)
    for obs in observations:
        if gate.refusal(obs):
            continue
        if obs.device_id not in devices:
            devices.add(obs.device_id)
            out.append(device_resource(obs.device_id, protocols.get(obs.device_id, "unknown"), obs.bed_id,
                                       obs.patient_id, patients))  # fmt: skip
        if (obs.device_id, obs.code) not in metrics:
            metrics.add((obs.device_id, obs.code))
            out.append(device_metric_resource(obs.device_id, obs.metric, obs.code, obs.unit))
        out.append(observation_resource(obs, patients, limits_for(ruleset, obs.bed_id)))
        if (pair := bp.add(obs)) is not None:
            out.append(blood_pressure_panel(*pair, patients))
    for alarm in sorted((r for r in records if isinstance(r, AlarmEvent)), key=lambda a: a.time):
        if alarm.patient_id is not None and gate.consented(alarm.patient_id):
            out.append(alarm_resource(alarm, patients))
    return out


def _store_records(cfg: Any) -> list[Record]:
    if not cfg.queue.path or not Path(cfg.queue.path).exists():
        return []
    from appliance.queue import Sealer, Store, load_or_create_key
    from appliance.queue.queue import export

    store = Store(cfg.queue.path, Sealer(load_or_create_key(cfg.queue.key_path, create=False)), cfg.queue.max_bytes,
                  repair=False)  # fmt: skip
    try:
        return list(export(store))
    finally:
        store.close()


def _journal_resources(cfg: Any) -> list[dict[str, Any]]:
    if not cfg.audit.journal_path or not Path(cfg.audit.journal_path).exists():
        return []
    from appliance.clinical.journal import Journal
    from appliance.queue.seal import Sealer, load_or_create_key

    journal = Journal(cfg.audit.journal_path, Sealer(load_or_create_key(cfg.queue.key_path, create=False)))
    try:
        return [json.loads(p) for p in journal.export_clinical()]
    finally:
        journal.close()


def fhir_bundle(config_path: str, interval_s: float | None) -> tuple[dict[str, Any], Counter[str]]:
    from rules.spec import DEFAULT_RULES_PATH, load_rules

    cfg = load_config(config_path)
    gate = ChartGate(interval_s if interval_s is not None else cfg.fhir.charting_interval_s)
    patients = PatientRef(cfg.fhir.patient_identifier_system)
    ruleset = load_rules(cfg.alarms.rules_path or DEFAULT_RULES_PATH)
    protocols = {d.id: d.protocol for d in cfg.devices}
    resources = _journal_resources(cfg) + resources_for(_store_records(cfg), gate, patients, ruleset, protocols)
    bundle = transaction_bundle(resources)
    return bundle, Counter(str(e["resource"]["resourceType"]) for e in bundle["entry"])
