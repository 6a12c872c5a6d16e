"""The clinical plane end to end (issue 21, items 1-3): an ADT sender over MLLP/TLS 1.3
with a client certificate, `bedside run` with a census, a monitor sending HL7 over MLLP,
Mosquitto with mutual TLS, and a consumer on the quarantine and telemetry topics.

One gateway process goes through a patient's stay: an unpaired reading is on the
quarantine topic only; pairing to anyone but the census patient is refused in one
line; the paired device's readings are telemetry with the census patient; the held
quarantine is released by an operator; consent withheld stops upload while the local
alarm still sounds; a transfer ends the pairing and quarantines again; bad ADT is
refused with a reason and nothing crashes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from appliance.core.model import Observation, TechnicalEvent
from appliance.queue.records import decode_batch
from appliance.uplink.envelope import batches_of
from appliance.uplink.gmqtt_adapter import close_client
from appliance.uplink.tls import client_context
from drivers.hl7.mllp import frame
from hil.broker import Broker, Pki, free_port
from tests.appliance.clinical.adt_messages import adt
from tests.integration.helpers import cli, records, spawn, wait_until
from tests.integration.test_clinical_e2e import FHIR_TYPES, Consumer
from tests.integration.test_uplink_e2e import Subscriber as _Subscriber

pytestmark = pytest.mark.integration

ORU = (
    "MSH|^~\\&|MON|ICU|||20260101120000||ORU^R01^ORU_R01|{id}|P|2.6|||AL|NE\r"
    "PID|||{pid}^^^HOSP^MR\rPV1||I|ICU^3^ICU-3\rOBR|1|||x|||20260101120000\r"
    "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|{value}|262688^MDC_DIM_PERCENT^MDC\r"
)


def config(tmp: Path, broker: Broker, pki: Pki, adt_port: int, hl7_port: int) -> str:
    ca, cert, key = pki.client_paths("gw-1")
    return f"""
[gateway]
bed_id = "ICU-3"
registry_path = "{tmp / "registry.json"}"
registry_poll_s = 0.1
[queue]
path = "{tmp / "store.db"}"
key_path = "{tmp / "store.key"}"
commit_interval_ms = 20
[uplink]
host = "127.0.0.1"
port = {broker.port}
server_hostname = "localhost"
gateway_id = "gw-1"
ca_path = "{ca}"
cert_path = "{cert}"
key_path = "{key}"
connect_timeout_s = 3.0
[alarms]
control_socket = "{tmp / "ctl.sock"}"
events_path = "{tmp / "alarms.jsonl"}"
console = false
[audit]
journal_path = "{tmp / "clinical.db"}"
[fhir]
charting_interval_s = 1.0
[clinical]
census_path = "{tmp / "census.json"}"
consent_path = "{tmp / "consent.json"}"
consent_poll_s = 0.2
adt_listen = "tls://127.0.0.1:{adt_port}"
adt_tls_cert_path = "{pki.dir / "broker.pem"}"
adt_tls_key_path = "{pki.dir / "broker.key"}"
[[devices]]
id = "mon"
protocol = "hl7"
port = "tcp://127.0.0.1:{hl7_port}"
"""


class Subscriber(_Subscriber):
    """The wire tests' consumer, reading the three record topics only (status is JSON)."""

    async def start(self, broker: Broker, pki: Pki) -> None:
        await self.client.connect("127.0.0.1", broker.port, ssl=client_context(pki.client("tail")))
        for leaf in ("telemetry", "quarantine", "alarms"):
            self.client.subscribe(f"bedside/v1/+/{leaf}", qos=1)
        await asyncio.sleep(0.2)


async def mllp(port: int, message: bytes, tls: ssl.SSLContext | None = None) -> str:
    """Send one framed message and return the ACK's MSA-1."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    try:
        writer.write(frame(message))
        async with asyncio.timeout(10):
            ack = (await reader.readuntil(b"\x1c\r")).decode()
    finally:
        writer.close()
    return ack.split("MSA|", 1)[1].split("|", 1)[0]


def by_leaf(sub: Subscriber) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for topic, env in list(sub.received):
        leaf = topic.rsplit("/", 1)[1]
        out.setdefault(leaf, []).extend(r for b in batches_of(env) for r in decode_batch(b))
    return out


def spo2(sub: Subscriber, leaf: str) -> list[Observation]:
    return [r for r in by_leaf(sub).get(leaf, []) if isinstance(r, Observation) and r.metric.endswith("SAT_O2")]


def technical(sub: Subscriber, kind: str) -> list[TechnicalEvent]:
    return [r for r in by_leaf(sub).get("telemetry", []) if isinstance(r, TechnicalEvent) and r.kind == kind]


async def eventually(predicate: Any, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_a_stay_from_admission_to_transfer(bench, broker, pki):
    tmp, procs = bench
    adt_port, hl7_port = free_port(), free_port()
    cfg = tmp / "gw.toml"
    cfg.write_text(config(tmp, broker, pki, adt_port, hl7_port))
    sender_tls = client_context(pki.client("gw-2"))  # the interface engine's certificate, from the hospital CA
    sub = Subscriber()
    await sub.start(broker, pki)
    clinical = Consumer()  # the hospital side of the clinical and audit topics (FHIR R4, the audit chain)
    await clinical.start(broker, pki)
    gateway = spawn("run", "--config", str(cfg))
    procs.append(gateway)
    try:
        up = wait_until(lambda: listening(adt_port) and listening(hl7_port), 20)
        assert up, gateway.stderr.read1().decode() if gateway.poll() is not None and gateway.stderr else "not up"
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await mllp(adt_port, adt("A01", "MRN-1", "ICU^3^ICU-3"))  # plaintext to the TLS listener: no
        # Bad input first: each refused with a reason, the gateway goes on.
        assert await mllp(adt_port, adt("A03", "MRN-9", control_id="EARLY"), sender_tls) == "AE"
        assert await mllp(adt_port, b"MSH|not hl7", sender_tls) == "AR"
        await eventually(lambda: technical(sub, "census_refused"))
        assert "EARLY" in technical(sub, "census_refused")[0].detail

        assert await mllp(adt_port, adt("A01", "MRN-1~WB-1", "ICU^3^ICU-3"), sender_tls) == "AA"
        # Unpaired: quarantine topic only.
        assert await mllp(hl7_port, ORU.format(id="O1", pid="MRN-1", value=96).encode()) == "CA"
        await eventually(lambda: spo2(sub, "quarantine"))
        assert [(o.value, o.patient_id) for o in spo2(sub, "quarantine")] == [(96.0, None)]

        refused = cli("devices", "--config", str(cfg), "pair", "mon", "--bed", "ICU-3", "--patient", "MRN-2")
        assert refused.returncode == 2 and refused.stdout == b""
        assert refused.stderr.decode().splitlines() == [
            "bedside: patient 'MRN-2' is not the patient in bed 'ICU-3' (census: MRN-1)"
        ]
        unknown = cli("devices", "--config", str(cfg), "pair", "mon", "--bed", "ICU-9")
        assert unknown.returncode == 2 and b"no admitted patient" in unknown.stderr
        ok = cli("devices", "--config", str(cfg), "pair", "mon", "--bed", "ICU-3", "--wristband", "WB-1")
        assert ok.returncode == 0 and b"patient MRN-1 (census)" in ok.stdout, ok.stderr
        await asyncio.sleep(0.5)  # the registry poll
        # The device names the wristband id: one of the census patient's identifiers, no mismatch.
        assert await mllp(hl7_port, ORU.format(id="O2", pid="WB-1", value=97).encode()) == "CA"
        await eventually(lambda: spo2(sub, "telemetry"))
        assert [(o.value, o.patient_id, o.quarantine) for o in spo2(sub, "telemetry")] == [(97.0, "MRN-1", False)]

        released = cli("devices", "--config", str(cfg), "release", "mon", "--badge", "B-17")
        assert released.returncode == 0 and b"released 1 held observations" in released.stdout, released.stderr
        await eventually(lambda: len(spo2(sub, "telemetry")) == 2)
        assert "released" in spo2(sub, "telemetry")[1].flags and spo2(sub, "telemetry")[1].value == 96.0

        consent = cli("consent", "--config", str(cfg), "set", "MRN-1", "withheld")
        assert consent.returncode == 0, consent.stderr
        await eventually(lambda: technical(sub, "consent_changed"))
        assert await mllp(hl7_port, ORU.format(id="O3", pid="MRN-1", value=75).encode()) == "CA"
        # The local alarm sounds (and the alarm event still reaches the central station)...
        await eventually(lambda: any(r.get("rule_id") == "spo2-desat" for r in records(tmp / "alarms.jsonl")))
        await eventually(lambda: any(getattr(r, "rule_id", "") == "spo2-desat" for r in by_leaf(sub).get("alarms", [])))
        await asyncio.sleep(0.5)
        # ...but the withheld reading never leaves the box.
        assert [o.value for o in spo2(sub, "telemetry")] == [97.0, 96.0] and len(spo2(sub, "quarantine")) == 1

        cli("consent", "--config", str(cfg), "set", "MRN-1", "granted")
        assert await mllp(adt_port, adt("A02", "MRN-1", "ICU^4^ICU-4"), sender_tls) == "AA"
        await eventually(lambda: technical(sub, "unpaired_by_census"))
        assert technical(sub, "unpaired_by_census")[0].device_id == "mon"
        assert await mllp(hl7_port, ORU.format(id="O4", pid="MRN-1", value=95).encode()) == "CA"
        await eventually(lambda: len(spo2(sub, "quarantine")) == 2)
        assert spo2(sub, "quarantine")[1].value == 95.0 and [o.value for o in spo2(sub, "telemetry")] == [97.0, 96.0]
        await eventually(lambda: json.loads((tmp / "registry.json").read_text())["devices"]["1"]["patient_id"] is None)
        census = json.loads((tmp / "census.json").read_text())
        assert [(s["patient"], s["location"]) for s in census["stays"]] == [("MRN-1", "ICU^4^ICU-4")]

        # The stay's audit entries reach the broker while the gateway runs (ones made while
        # stopping go out at its next start).
        wanted = {"census_refused", "consent_changed", "quarantine_released", "pairing_ended"}
        await eventually(lambda: wanted <= {e["kind"] for e in clinical.entries()}, 20)
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(10) == 0
    finally:
        await sub.stop()
        await close_client(clinical.client)
    # Clinical plane, FHIR: only the census patient's consented, paired values are charted, and they validate.
    charted = [r for r in clinical.resources() if r["resourceType"] == "Observation" and "valueQuantity" in r]
    for res in clinical.resources():
        FHIR_TYPES[res["resourceType"]].parse_obj(res)
    values = [r["valueQuantity"]["value"] for r in charted if r["code"]["coding"][0]["code"] == "2708-6"]
    assert 97 in values and 75 not in values and 95 not in values, values  # withheld and re-quarantined: never
    assert {r["subject"]["identifier"]["value"] for r in charted} == {"MRN-1"}
    # The audit chain collected at the broker verifies and holds the stay's decisions.
    entries = clinical.entries()
    assert wanted <= {e["kind"] for e in entries}
    (tmp / "collected.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    verdict = cli("audit", "verify", "--from-genesis", "--cert", pki.client("gw-1").cert, str(tmp / "collected.jsonl"))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
