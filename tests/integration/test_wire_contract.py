"""docs/wire.md holds: real payloads from a real uplink through Mosquitto (mTLS) match
docs/wire.schema.json, the reference consumer prints what was sent, a clean stop
leaves a retained "offline", and two consumers on one shared subscription split
the load with nothing lost and nothing doubled."""

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import gmqtt
import jsonschema
import pytest

from appliance.core.model import TechnicalEvent
from appliance.queue.queue import QueueSettings, RecordQueue
from appliance.uplink.client import Uplink, UplinkSettings
from appliance.uplink.gmqtt_adapter import close_client
from appliance.uplink.tls import client_context
from hil.broker import Broker, Pki
from tests.appliance.queue.test_queue import ALARM
from tests.appliance.queue.test_records import observation
from tests.integration.helpers import until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "wire.schema.json").read_text())
# CBOR byte strings: the schema's extra type name "bytes" (see its $comment).
_Checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("bytes", lambda _c, v: isinstance(v, bytes))
Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_Checker)
Uplinked = tuple[RecordQueue, Uplink, "asyncio.Task[None]"]


def validate(instance: Any, definition: str) -> None:
    Validator({**SCHEMA, "$ref": f"#/$defs/{definition}"}).validate(instance)


class Sniffer:
    """Keeps every message with its MQTT 5 properties."""

    def __init__(self, client_id: str) -> None:
        self.got: list[tuple[str, bytes, dict[str, Any]]] = []
        self.client = gmqtt.Client(client_id)

        def on_message(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
            self.got.append((topic, payload, properties))
            return 0

        self.client.on_message = on_message

    async def start(self, broker: Broker, pki: Pki, topic: str = "bedside/#") -> None:
        await self.client.connect("127.0.0.1", broker.port, ssl=client_context(pki.client("tail")))
        self.client.subscribe(topic, qos=1)
        await asyncio.sleep(0.3)

    def on(self, suffix: str) -> list[tuple[bytes, dict[str, Any]]]:
        return [(p, props) for t, p, props in self.got if t.endswith(suffix)]


@pytest.fixture
async def uplinked(tmp_path: Path, broker: Broker, pki: Pki) -> AsyncIterator[Uplinked]:
    queue = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), commit_interval_ms=20),
                        lambda e: None)  # fmt: skip
    settings = UplinkSettings("127.0.0.1", broker.port, "localhost", "gw-1", *pki.client_paths("gw-1"),
                              connect_timeout_s=3, backoff_min_s=0.1, backoff_max_s=1.0)  # fmt: skip
    uplink = Uplink(settings, queue, lambda e: None)
    q_task, u_task = asyncio.create_task(queue.run()), asyncio.create_task(uplink.run())
    await until(lambda: uplink.connected, 10)
    yield queue, uplink, u_task
    for t in (q_task, u_task):
        t.cancel()
    await asyncio.gather(q_task, u_task, return_exceptions=True)
    queue.close()


async def test_real_payloads_match_the_schema_and_carry_mqtt5_properties(uplinked: Uplinked, broker: Broker,
                                                                         pki: Pki) -> None:  # fmt: skip
    queue, uplink, _ = uplinked
    sniff = Sniffer("tail-schema")
    await sniff.start(broker, pki)
    alarm = replace(ALARM, device_id="m1", patient_id="P-7", observation_ids=(observation(1).obs_id,))
    for i in range(40):
        queue.offer(observation(i, 90.0 + i))
    queue.offer(replace(observation(40), patient_id=None, quarantine=True, flags=frozenset({"clock_skew"})))
    queue.offer(TechnicalEvent("m1", "stale", detail="x", time=ALARM.time, bed_id="ICU-1"))
    queue.offer(alarm)
    uplink.on_record(alarm)
    await until(lambda: len(sniff.on("/alarms")) >= 1 and len(sniff.on("/telemetry")) >= 2, 20)
    await close_client(sniff.client)
    times: list[int] = []
    for payload, props in sniff.on("/alarms") + sniff.on("/telemetry"):
        assert props.get("content_type") == ["application/cbor"] and props.get("payload_format_id") == [0]
        envelope = cbor2.loads(payload)
        validate(envelope, "envelope")
        for raw in envelope["batches"]:
            batch = cbor2.loads(raw)
            validate(batch, "batch")
            times += [e["time"] for e in batch["x"]]
    assert times and all(isinstance(t, int) for t in times)  # one time representation
    (status, props), *_ = sniff.on("/status")
    assert props.get("content_type") == ["application/json"] and props.get("payload_format_id") == [1]
    validate(json.loads(status), "status")
    (active, _), *_ = sniff.on("/status/alarms/ICU-1")
    validate(json.loads(active), "active_alarms")
    assert [a["patient_id"] for a in json.loads(active)["alarms"]] == ["P-7"]


async def _consumer(broker: Broker, pki: Pki, topic: str, count: int = 0) -> asyncio.subprocess.Process:
    tls = pki.client("tail")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "consumer.py"), "127.0.0.1", str(broker.port), tls.ca, tls.cert,
        tls.key, topic, str(count), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(15):
        assert (await proc.stderr.readline()).startswith(b"# subscribed")
    return proc


async def test_reference_consumer_prints_the_records_sent(uplinked: Uplinked, broker: Broker, pki: Pki) -> None:
    queue, _, _ = uplinked
    proc = await _consumer(broker, pki, "bedside/v1/+/+", count=31)
    sent = [observation(i, 80.0 + i) for i in range(30)]
    for o in sent:
        queue.offer(o)
    queue.offer(ALARM)
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    obs = {r["obs_id"]: r for r in lines if r["type"] == "observation"}
    assert len(obs) == 30 and set(obs) == {o.obs_id for o in sent}
    for o in sent:
        got = obs[o.obs_id]
        assert (got["value"], got["unit"], got["time"]) == (o.value, o.unit, int(o.time.timestamp() * 1000))
    assert [r["alarm_id"] for r in lines if r["type"] == "alarm"] == [ALARM.alarm_id]


async def test_a_clean_stop_leaves_offline_with_a_reason(uplinked: Uplinked, broker: Broker, pki: Pki) -> None:
    _, _, task = uplinked
    task.cancel()  # what SIGTERM does through the supervisor
    await asyncio.gather(task, return_exceptions=True)
    late = Sniffer("tail-late")
    await late.start(broker, pki, "bedside/v1/gw-1/status")
    await until(lambda: bool(late.on("/status")), 5)
    await close_client(late.client)
    status = json.loads(late.on("/status")[-1][0])
    assert (status["state"], status["reason"]) == ("offline", "stopped")


async def test_two_consumers_share_one_subscription(uplinked: Uplinked, broker: Broker, pki: Pki) -> None:
    queue, _, _ = uplinked
    shared = "$share/hospital/bedside/v1/+/telemetry"
    procs = [await _consumer(broker, pki, shared) for _ in range(2)]
    sent = {observation(i).obs_id for i in range(200)}
    for i in range(200):
        queue.offer(observation(i))
        if i % 10 == 9:
            await asyncio.sleep(0.1)  # several publishes, so the broker has something to share
    outputs: list[set[str]] = [set(), set()]

    async def read(n: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            outputs[n].add(json.loads(line)["obs_id"])

    readers = [asyncio.create_task(read(n, p)) for n, p in enumerate(procs)]
    try:
        await until(lambda: outputs[0] | outputs[1] >= sent, 30)
        await asyncio.sleep(0.5)
    finally:
        for p in procs:
            p.terminate()
        await asyncio.gather(*readers, *(p.wait() for p in procs), return_exceptions=True)
    assert outputs[0] | outputs[1] == sent  # nothing lost
    assert outputs[0] and outputs[1], "both consumers got a share"
    assert not outputs[0] & outputs[1]  # nothing doubled (the broker delivers each publish once)
