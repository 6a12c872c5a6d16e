"""The clinical plane inside a running gateway (in-memory device stream, real journal,
real control socket): what is charted, what is audited, consent, restarts."""

import asyncio
import json
import os
import pwd
import subprocess
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.clinical.chain import verify_chain
from appliance.clinical.journal import Journal
from appliance.config import parse_config
from appliance.core.model import TechnicalEvent
from appliance.gateway import Gateway
from appliance.queue.seal import Sealer, load_or_create_key
from appliance.registry import Registry
from appliance.sdnotify import Notifier
from appliance.uplink.pki import write_key
from rules.outputs import MemoryOutput
from tests.appliance.test_gateway import Streams, wait_for

LINE = b"09/15/10 15:10:29 SPO2=%03d%% BPM=064 PI=11.82%% ALARM=20 EXC=800\r\n"


def config_text(tmp_path) -> str:
    return f"""
[gateway]
bed_id = "ICU-9"
registry_path = "{tmp_path / "registry.json"}"
registry_poll_s = 0.1
max_clock_skew_s = 86400
[queue]
path = "{tmp_path / "store.db"}"
key_path = "{tmp_path / "store.key"}"
[alarms]
control_socket = "{tmp_path / "ctl.sock"}"
console = false
[audit]
journal_path = "{tmp_path / "clinical.db"}"
key_path = "{tmp_path / "box.key"}"
[fhir]
charting_interval_s = 30
patient_identifier_system = "urn:oid:1.2.3.4"
[[devices]]
id = "m1"
protocol = "masimo"
port = "/dev/fake0"
timezone = "UTC"
"""


@pytest.fixture
def box(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    write_key(tmp_path / "box.key", key)
    return tmp_path, parse_config(config_text(tmp_path)), key


async def started(cfg, output=None):
    streams = Streams()
    gw = Gateway(cfg, opener=streams, notifier=Notifier({}), outputs=[output or MemoryOutput()])
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    await wait_for(lambda: "/dev/fake0" in streams.by_port)
    return gw, streams.by_port["/dev/fake0"], stop, runner


def is_alarm(resource: dict[str, Any]) -> bool:
    """An ACM alarm Observation: coded MDC_EVT_ALARM."""
    return bool(resource["resourceType"] == "Observation" and resource["code"]["coding"][-1]["code"] == "196616")


def journal(tmp):
    return Journal(tmp / "clinical.db", Sealer(load_or_create_key(tmp / "store.key", create=False)))


def resources(tmp) -> list[dict[str, Any]]:
    j = journal(tmp)
    try:
        return [json.loads(p) for p in j.export_clinical()]
    finally:
        j.close()


def audit(tmp):
    j = journal(tmp)
    try:
        return list(j.export_audit())
    finally:
        j.close()


async def test_paired_values_are_charted_and_everything_is_audited(box):
    tmp, cfg, key = box
    gw, stream, stop, runner = await started(cfg)
    assert gw.audit_fhir is not None
    Registry(cfg.gateway.registry_path).pair("m1", "ICU-4", "MRN-77")
    await wait_for(lambda: gw.context(cfg.devices[0]).patient_id == "MRN-77")
    await wait_for(lambda: gw.audit_fhir is not None and gw.audit_fhir.trail.seq >= 4)  # the pairing entry
    for _ in range(3):  # three readings within the charting interval: one charted per metric
        stream.push(LINE % 97)
        await asyncio.sleep(0.05)
    reply = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "appliance.cli", "alarm", "--socket", str(tmp / "ctl.sock"), "ack", "--badge", "B-42"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert reply.returncode == 0, reply.stderr
    ctl = ["alarm", "--socket", str(tmp / "ctl.sock")]
    bad = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "appliance.cli", *ctl, "pause", "--badge", "x" * 65],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and b"badge must be" in bad.stderr
    gw.publish(TechnicalEvent("ota", "update", detail="downloading 1.2.0"))
    stop.set()
    assert await runner

    made = resources(tmp)
    # The 2010 device clock raised the technical clock-skew alarm: an ACM alarm Observation (MDC_EVT_ALARM).
    alarms = [r for r in made if is_alarm(r)]
    assert [a["valueCodeableConcept"]["coding"][0]["code"] for a in alarms] == ["clock-skew"]
    kinds = [r["resourceType"] for r in made if r not in alarms]
    assert kinds.count("Device") == 1 and kinds.count("DeviceMetric") == 3 and kinds.count("Observation") == 3
    obs = [r for r in made if r["resourceType"] == "Observation" and r not in alarms]
    assert {r["subject"]["identifier"]["value"] for r in obs} == {"MRN-77"}
    assert {r["subject"]["identifier"]["system"] for r in obs} == {"urn:oid:1.2.3.4"}

    entries = audit(tmp)
    assert verify_chain(entries, key.public_key(), from_genesis=True).ok
    by_kind = {e.kind: e.fields for e in entries}
    assert (
        list(by_kind)[:3] == ["chain_started", "config_loaded", "pairings_loaded"]
        and len(by_kind["config_loaded"]["sha256"]) == 64
    )
    assert by_kind["pairing"]["patient_id"] == "MRN-77" and by_kind["pairing"]["bed_id"] == "ICU-4"
    me = pwd.getpwuid(os.getuid()).pw_name
    assert by_kind["alarm_ack"] == {"bed": None, "rule": None, "uid": os.getuid(), "user": me, "badge": "B-42"}
    assert "audio_pause" not in by_kind  # refused: nothing done, nothing recorded
    assert by_kind["ota_step"]["detail"] == "downloading 1.2.0"


async def test_an_unpaired_device_is_not_charted_and_its_unpairing_is_audited(box):
    tmp, cfg, _key = box
    Registry(cfg.gateway.registry_path).pair("m1", "ICU-4", "MRN-77")
    gw, stream, stop, runner = await started(cfg)
    Registry(cfg.gateway.registry_path).unpair("m1")
    await wait_for(lambda: gw.context(cfg.devices[0]).patient_id is None)
    stream.push(LINE % 97)
    await wait_for(lambda: gw.counts["observation"] >= 3)
    stop.set()
    await runner
    assert resources(tmp) == []
    assert gw.audit_fhir is not None and gw.audit_fhir.refused == {"unpaired": 3}
    unpairing = [e for e in audit(tmp) if e.kind == "unpairing"]
    assert len(unpairing) == 1 and unpairing[0].fields["device_id"] == "m1"


async def test_consent_withheld_stops_the_chart_not_the_alarm(box):
    tmp, cfg, _ = box
    Registry(cfg.gateway.registry_path).pair("m1", "ICU-4", "MRN-77")
    output = MemoryOutput()
    gw, stream, stop, runner = await started(cfg, output)
    assert gw.audit_fhir is not None
    gw.audit_fhir.gate.consented = lambda patient: False  # the consent gate's predicate
    stream.push(LINE % 75)  # SpO2 75: the default rules' desaturation alarm, no delay
    await wait_for(lambda: any(a.audible == "high" for _, a in output.annunciations))
    stop.set()
    await runner
    assert resources(tmp) == []
    assert gw.audit_fhir.refused.get("not consented") == 3


async def test_with_consent_an_alarm_is_an_acm_observation(box):
    tmp, cfg, _ = box
    Registry(cfg.gateway.registry_path).pair("m1", "ICU-4", "MRN-77")
    gw, stream, stop, runner = await started(cfg)
    stream.push(LINE % 75)
    await wait_for(lambda: gw.counts["alarmevent"] >= 1)
    stop.set()
    await runner
    alarms = [r for r in resources(tmp) if is_alarm(r)]
    desat = [a for a in alarms if a["valueCodeableConcept"]["coding"][0]["code"] == "spo2-desat"]
    assert desat and desat[0]["subject"]["identifier"]["value"] == "MRN-77"
    spo2 = next(r for r in resources(tmp) if r.get("meta", {}).get("profile") == [
        "http://hl7.org/fhir/StructureDefinition/oxygensat"])  # fmt: skip
    assert spo2["interpretation"][0]["coding"][0]["code"] == "LL"


async def test_a_restart_continues_the_chain(box):
    tmp, cfg, key = box
    for _ in range(2):
        _gw, _stream, stop, runner = await started(cfg)
        stop.set()
        await runner
    entries = audit(tmp)
    assert [e.kind for e in entries] == ["chain_started", "config_loaded", "pairings_loaded"] * 2
    assert entries[3].fields["reason"] == "gateway started" and entries[3].prev == entries[2].hash
    assert verify_chain(entries, key.public_key(), from_genesis=True).ok


def test_a_key_open_to_others_is_refused_in_one_line(box):
    """`bedside run` checks the signing key before anything starts (exit 2, one line)."""
    tmp, cfg, _ = box
    os.chmod(tmp / "box.key", 0o644)
    from appliance.config_checks import startup_checks
    from appliance.core.errors import BedsideConfigError

    with pytest.raises(BedsideConfigError, match=r"gw\.toml: audit\.key_path: .*box\.key: audit signing key mode 0644"):
        startup_checks(cfg, "gw.toml")
    (tmp / "box.key").write_bytes(b"not a key")
    os.chmod(tmp / "box.key", 0o600)
    with pytest.raises(BedsideConfigError, match=r"audit\.key_path: .*audit signing key unreadable"):
        startup_checks(cfg, "gw.toml")


@pytest.mark.parametrize("damage", ["not sqlite", "other key"])
async def test_an_unreadable_journal_is_set_aside_and_the_gateway_runs(box, damage):
    tmp, cfg, key = box
    if damage == "not sqlite":
        (tmp / "clinical.db").write_bytes(b"\x00garbage" * 512)
    else:
        j = Journal(tmp / "clinical.db", Sealer(b"o" * 32))  # the key of another store
        from appliance.clinical.audit import AuditTrail

        AuditTrail(key, "gw-1", lambda: 1, j.offer_audit).record("x", {})
        await j.commit()
        j.close()
    _gw, _stream, stop, runner = await started(cfg)
    stop.set()
    assert await runner
    entries = audit(tmp)
    assert entries[0].kind == "chain_started" and "unreadable" in entries[0].fields["reason"]
    assert verify_chain(entries, key.public_key(), from_genesis=True).ok
    assert list(tmp.glob("clinical.db.unreadable-*"))  # kept for forensics, never deleted


async def test_arbiter_decisions_are_audited_per_bed_and_metric(box):
    tmp, _, _ = box  # two oximeters at one bed: the arbiter decides between them
    text = config_text(tmp) + '[[devices]]\nid = "m2"\nprotocol = "masimo"\nport = "/dev/fake1"\ntimezone = "UTC"\n'
    cfg2 = parse_config(text)
    streams = Streams()
    gw = Gateway(cfg2, opener=streams, notifier=Notifier({}), outputs=[MemoryOutput()])
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    await wait_for(lambda: {"/dev/fake0", "/dev/fake1"} <= set(streams.by_port))
    for _ in range(5):
        streams.by_port["/dev/fake0"].push(LINE % 97)
        streams.by_port["/dev/fake1"].push(LINE % 93)
        await asyncio.sleep(0.02)
    assert gw.audit_fhir is not None and gw.stats()["audit_fhir"]["audit_seq"] >= 3
    stop.set()
    await runner
    decisions = [e.fields for e in audit(tmp) if e.kind == "arbiter_decisions"]
    spo2 = [d for d in decisions if d["metric"] == "MDC_PULS_OXIM_SAT_O2"]
    assert len(spo2) == 1 and spo2[0]["bed_id"] == "ICU-9" and spo2[0]["candidates"] == ["m1", "m2"]
    assert spo2[0]["decisions"] >= 1 and sum(spo2[0]["chosen"].values()) == spo2[0]["decisions"]


async def test_a_cuff_measurement_is_charted_with_its_panel(box):
    from datetime import UTC, datetime

    from appliance.clinical.audit_fhir import AuditFhirPlane
    from appliance.clinical.audit_settings import AuditSettings, FhirSettings
    from appliance.core.model import Observation
    from appliance.core.vocab import Quality
    from rules.spec import DEFAULT_RULES_PATH, load_rules

    tmp, _, _ = box
    plane = AuditFhirPlane(
        AuditSettings(journal_path=str(tmp / "clinical.db")), FhirSettings(), audit_key_path=str(tmp / "box.key"),
        seal_key_path=str(tmp / "store.key"), gateway_id="gw", ruleset=load_rules(DEFAULT_RULES_PATH),
        now_ms=lambda: 0, protocols={"cuff": "ble-blood-pressure"},
    )  # fmt: skip
    t = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    for i, (metric, code, value) in enumerate(
        [
            ("MDC_PRESS_BLD_NONINV_SYS", 150021, 128.0),
            ("MDC_PRESS_BLD_NONINV_DIA", 150022, 84.0),
            ("MDC_PRESS_BLD_NONINV_MEAN", 150023, 99.0),
        ]
    ):
        plane.on_record(Observation(f"{i:032x}", metric, code, value, "mm[Hg]", t, t, Quality.VALID, "cuff", "ICU-1",
                                    "MRN-1"))  # fmt: skip
    await plane.journal.commit()
    plane.close()
    made = resources(tmp)
    panels = [r for r in made if r.get("meta", {}).get("profile") == ["http://hl7.org/fhir/StructureDefinition/bp"]]
    assert len(panels) == 1 and [r["resourceType"] for r in made].count("Observation") == 4
    assert made[0]["resourceType"] == "Device" and made[0]["type"]["text"] == "ble-blood-pressure"
