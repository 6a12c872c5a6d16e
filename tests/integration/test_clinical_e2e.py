"""The clinical plane end to end with real parts: two simulated oximeters on ptys (one
paired to a patient, one not) -> `bedside run` -> Mosquitto (mTLS 1.3) -> consumers
on the clinical and audit topics. The paired device's values arrive as FHIR R4 that
validates, the unpaired one's never do; an operator's acknowledgement is audited
with their user name and badge; the chain collected at the broker and the one
exported from the box verify, and an edit, a deletion and a reordering are each
caught with `bedside audit verify`. Then `bedside export --format fhir`."""

import asyncio
import json
import os
import pwd
import signal
from typing import Any

import gmqtt
import pytest
from fhir.resources.bundle import Bundle
from fhir.resources.device import Device
from fhir.resources.devicemetric import DeviceMetric
from fhir.resources.observation import Observation as FhirObservation

from appliance.uplink.gmqtt_adapter import close_client
from appliance.uplink.tls import client_context
from tests.integration.helpers import cli, gateway_toml, records, spawn, wait_until

pytestmark = pytest.mark.integration
FHIR_TYPES = {"Observation": FhirObservation, "Device": Device, "DeviceMetric": DeviceMetric}
RULES = '[[rule]]\nid = "spo2-any"\nkind = "limit"\nmetric = "MDC_PULS_OXIM_SAT_O2"\nbelow = 101.0\npriority = "high"\n'


class Consumer:
    """A hospital-side consumer (CN=tail, read-only by ACL) on the clinical and audit topics."""

    def __init__(self) -> None:
        self.clinical: list[dict[str, Any]] = []
        self.audit: list[bytes] = []
        self.client = gmqtt.Client("clinical-consumer")
        self.content_types: set[str] = set()

        def on_message(client, topic, payload, qos, properties):
            self.content_types.update(properties.get("content_type", []))
            if topic.endswith("/clinical"):
                self.clinical.append(json.loads(payload))
            elif topic.endswith("/audit"):
                self.audit.append(payload)
            return 0

        self.client.on_message = on_message

    async def start(self, broker, pki) -> None:
        await self.client.connect("127.0.0.1", broker.port, ssl=client_context(pki.client("tail")))
        self.client.subscribe("bedside/v1/gw-1/clinical", qos=1)
        self.client.subscribe("bedside/v1/gw-1/audit", qos=1)
        await asyncio.sleep(0.2)

    def resources(self) -> list[dict[str, Any]]:
        return [e["resource"] for b in self.clinical for e in b["entry"]]

    def entries(self) -> list[dict[str, Any]]:
        return [e for p in self.audit for e in json.loads(p)["entries"]]


def config(tmp, broker, pki) -> str:
    files = pki.client("gw-1")
    sections = (
        f'[uplink]\nhost = "127.0.0.1"\nport = {broker.port}\nserver_hostname = "localhost"\ngateway_id = "gw-1"\n'
        f'ca_path = "{pki.ca}"\ncert_path = "{files.cert}"\nkey_path = "{files.key}"\nconnect_timeout_s = 3.0\n'
        f'[alarms]\nrules_path = "{tmp / "rules.toml"}"\ncontrol_socket = "{tmp / "ctl.sock"}"\nconsole = false\n'
        f'[audit]\njournal_path = "{tmp / "clinical.db"}"\n'
        '[fhir]\ncharting_interval_s = 1.0\npatient_identifier_system = "urn:oid:2.16.840.1.113883.19.5"\n'
    )
    text = gateway_toml(tmp, "ICU-2", queue=True, sections=sections, device=("masimo-1", "masimo", "masimo0"))
    # An unpaired oximeter at the next bed (a bed's alarms name the patient of its latest observation).
    return text + f'[[devices]]\nid = "masimo-2"\nprotocol = "masimo"\nport = "{tmp / "masimo1"}"\nbed_id = "ICU-3"\n'


def is_alarm(resource: dict[str, Any]) -> bool:
    return bool(resource["resourceType"] == "Observation" and resource["code"]["coding"][-1]["code"] == "196616")


def tamper(lines: list[str], how: str) -> list[str]:
    out = list(lines)
    if how == "edit":
        entry = json.loads(out[2])
        entry["fields"]["count"] = 0
        out[2] = json.dumps(entry)
    elif how == "delete":
        del out[3]
    else:
        out[3], out[4] = out[4], out[3]
    return out


async def test_clinical_and_audit_topics_end_to_end(bench, broker, pki):
    tmp, procs = bench
    (tmp / "rules.toml").write_text(RULES)
    (tmp / "gw.toml").write_text(config(tmp, broker, pki))
    paired = cli(
        "devices", "--config", str(tmp / "gw.toml"), "pair", "masimo-1", "--bed", "ICU-2", "--patient", "MRN-1"
    )
    assert paired.returncode == 0, paired.stderr
    consumer = Consumer()
    await consumer.start(broker, pki)
    try:
        procs.append(spawn("run", "--config", str(tmp / "gw.toml")))
        for port in ("masimo0", "masimo1"):
            procs.append(spawn("hil", "simulate", "masimo", "--port", str(tmp / port), "--rate", "4"))

        def charted() -> list[dict[str, Any]]:
            return [r for r in consumer.resources() if r["resourceType"] == "Observation" and "valueQuantity" in r]

        async with asyncio.timeout(40):
            while len({r["effectiveDateTime"] for r in charted()}) < 3:
                await asyncio.sleep(0.2)
        # Every resource on the clinical topic validates as R4 and is the paired patient's.
        for bundle in consumer.clinical:
            Bundle.parse_obj(bundle)
            assert bundle["type"] == "transaction"
        for res in consumer.resources():
            FHIR_TYPES[res["resourceType"]].parse_obj(res)
        assert {r["device"]["display"] for r in charted()} == {"masimo-1"}  # never the unpaired masimo-2
        assert {r["subject"]["identifier"]["value"] for r in charted()} == {"MRN-1"}
        assert "application/fhir+json" in consumer.content_types
        spo2 = [r for r in charted() if r["code"]["coding"][0]["code"] == "2708-6"]
        assert spo2 and spo2[0]["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/oxygensat"]
        # One value per metric and device per second (charting_interval_s = 1) while the device sends 4.
        times = sorted(r["effectiveDateTime"] for r in spo2)
        assert len(times) == len(set(times)) and len(records(tmp / "records.jsonl")) > len(charted())
        # The spo2-any alarm of the paired patient is an ACM Observation on the clinical topic too.
        async with asyncio.timeout(10):
            while not any(is_alarm(r) for r in consumer.resources()):
                await asyncio.sleep(0.1)

        repair = cli("devices", "--config", str(tmp / "gw.toml"), "pair", "masimo-2", "--bed", "ICU-3")
        assert repair.returncode == 0, repair.stderr
        ack = cli("alarm", "--socket", str(tmp / "ctl.sock"), "ack", "--bed", "ICU-2", "--badge", "BADGE-7")
        assert ack.returncode == 0, ack.stderr
        async with asyncio.timeout(15):
            while not {"alarm_ack", "pairing"} <= {e["kind"] for e in consumer.entries()}:
                await asyncio.sleep(0.1)
        gateway = procs[0]
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(15) == 0
    finally:
        await close_client(consumer.client)

    entries = consumer.entries()
    ack_entry = next(e for e in entries if e["kind"] == "alarm_ack")
    assert (
        ack_entry["fields"]["user"] == pwd.getpwuid(os.getuid()).pw_name and ack_entry["fields"]["badge"] == "BADGE-7"
    )
    kinds = [e["kind"] for e in entries]
    assert kinds[:3] == ["chain_started", "config_loaded", "pairings_loaded"] and "pairing" in kinds, kinds
    loaded = entries[2]["fields"]["pairings"]
    assert loaded == [{"device_id": "masimo-1", "bed_id": "ICU-2", "patient_id": "MRN-1"}]
    cert = pki.client("gw-1").cert
    collected = [json.dumps(e) for e in entries]
    (tmp / "collected.jsonl").write_text("\n".join(collected) + "\n")
    ok = cli("audit", "verify", "--from-genesis", "--cert", cert, str(tmp / "collected.jsonl"))
    assert ok.returncode == 0 and b"ok:" in ok.stdout, ok.stdout + ok.stderr
    for how, words in (("edit", b"edited"), ("delete", b"missing"), ("reorder", b"broken at entry 4")):
        (tmp / f"{how}.jsonl").write_text("\n".join(tamper(collected, how)) + "\n")
        verdict = cli("audit", "verify", "--cert", cert, str(tmp / f"{how}.jsonl"))
        assert verdict.returncode == 1 and words in verdict.stdout, (how, verdict.stdout, verdict.stderr)
    # The box's own copy: everything the broker got, and the shutdown's entries too.
    exported = cli("audit", "export", "--config", str(tmp / "gw.toml"))
    assert exported.returncode == 0, exported.stderr
    (tmp / "box.jsonl").write_bytes(exported.stdout)
    box = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [e["hash"] for e in box[: len(entries)]] == [e["hash"] for e in entries]
    assert cli("audit", "verify", "--from-genesis", "--cert", cert, str(tmp / "box.jsonl")).returncode == 0
    # Another box's certificate does not verify this chain.
    other = cli("audit", "verify", "--cert", pki.client("gw-2").cert, str(tmp / "box.jsonl"))
    assert other.returncode == 1 and b"signature" in other.stdout


def test_export_writes_a_transaction_bundle(bench):
    """Offline (no uplink): what the box holds, as one FHIR transaction Bundle."""
    from appliance.uplink.pki import issue, make_ca, write_key

    tmp, procs = bench
    write_key(tmp / "box.key", issue(make_ca("CA"), "gw-x").key)
    sections = f'[audit]\njournal_path = "{tmp / "clinical.db"}"\nkey_path = "{tmp / "box.key"}"\n'
    (tmp / "gw.toml").write_text(gateway_toml(tmp, "ICU-5", queue=True, sections=sections,
                                              device=("masimo-1", "masimo", "masimo0")))  # fmt: skip
    assert cli("devices", "--config", str(tmp / "gw.toml"), "pair", "masimo-1", "--bed", "ICU-5",
               "--patient", "MRN-5").returncode == 0  # fmt: skip
    gateway = spawn("run", "--config", str(tmp / "gw.toml"))
    procs.extend([gateway, spawn("hil", "simulate", "masimo", "--port", str(tmp / "masimo0"), "--rate", "4")])
    assert wait_until(lambda: sum(r["type"] == "observation" for r in records(tmp / "records.jsonl")) >= 12, 30)
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(15) == 0
    res = cli("export", "--format", "fhir", "--config", str(tmp / "gw.toml"), "--interval", "60",
              "--out", str(tmp / "bundle.json"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    bundle = json.loads((tmp / "bundle.json").read_text())
    Bundle.parse_obj(bundle)
    resources = [e["resource"] for e in bundle["entry"]]
    for resource in resources:
        FHIR_TYPES[resource["resourceType"]].parse_obj(resource)
    kinds = [r["resourceType"] for r in resources]
    obs = [r for r in resources if r["resourceType"] == "Observation" and not is_alarm(r)]
    metrics = {o["code"]["coding"][-1]["code"] for o in obs}
    assert kinds.count("Device") == 1 and kinds.count("DeviceMetric") == len(metrics) >= 3
    # Charted once per metric in the interval (the journal's copies are the same resources: PUT once).
    assert len(obs) == len(metrics) and all(o["subject"]["identifier"]["value"] == "MRN-5" for o in obs)
    assert b"transaction Bundle:" in res.stderr
    bad = cli("export", "--format", "fhir", "--config", str(tmp / "missing.toml"))
    assert bad.returncode == 2 and bad.stderr.count(b"\n") == 1
