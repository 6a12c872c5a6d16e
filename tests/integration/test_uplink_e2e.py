"""Store -> uplink -> real Mosquitto (mTLS 1.3) -> a subscriber: nothing lost."""

import asyncio
from typing import Any

import cbor2
import gmqtt
import pytest

from appliance.core.model import AlarmEvent, Observation, TechnicalEvent
from appliance.queue.queue import QueueSettings, RecordQueue
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.store import RecordClass
from appliance.uplink.client import Uplink, UplinkSettings
from appliance.uplink.envelope import batches_of
from appliance.uplink.gmqtt_adapter import close_client
from appliance.uplink.tls import client_context
from hil.broker import Broker, Pki
from tests.appliance.queue.test_queue import ALARM
from tests.appliance.queue.test_records import observation

pytestmark = pytest.mark.integration


class Subscriber:
    """A consumer with its own certificate (CN=tail, read-only by ACL)."""

    def __init__(self, client_id: str = "tail-test", persistent: bool = False) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        # A persistent session keeps the subscription and queues QoS 1 messages while away.
        kwargs = {"clean_session": False, "session_expiry_interval": 3600} if persistent else {}
        self.client = gmqtt.Client(client_id, **kwargs)

        def on_message(client, topic, payload, qos, properties):
            if not topic.endswith("/status"):
                self.received.append((topic, cbor2.loads(payload)))
            return 0

        self.client.on_message = on_message

    async def start(self, broker, pki) -> None:
        await self.client.connect("127.0.0.1", broker.port, ssl=client_context(pki.client("tail")))
        self.client.subscribe("bedside/#", qos=1)
        await asyncio.sleep(0.2)

    def records(self):
        out: list[Any] = []
        for topic, env in self.received:
            if topic.endswith("/status"):
                continue
            out.extend(r for b in batches_of(env) for r in decode_batch(b))
        return out

    async def stop(self) -> None:
        await close_client(self.client)


async def wait_for(predicate, timeout=20.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


@pytest.fixture
async def system(tmp_path, broker, pki):
    reports: list[TechnicalEvent] = []
    queue = RecordQueue(
        QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), commit_interval_ms=20), reports.append
    )
    settings = UplinkSettings("127.0.0.1", broker.port, "localhost", "gw-1", *Pki.client_paths(pki, "gw-1"),
                              connect_timeout_s=3, backoff_min_s=0.1, backoff_max_s=1.0)  # fmt: skip
    uplink = Uplink(settings, queue, reports.append)
    tasks = [asyncio.create_task(queue.run()), asyncio.create_task(uplink.run())]
    sub = Subscriber()
    await sub.start(broker, pki)
    yield queue, uplink, sub, reports
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sub.stop()
    queue.close()


async def test_end_to_end_values_intact_alarms_first_store_emptied(system):
    queue, uplink, sub, reports = system
    for i in range(300):
        queue.offer(observation(i, 90.0 + i % 7))
    queue.offer(ALARM)
    await wait_for(lambda: len([r for r in sub.records() if isinstance(r, Observation)]) >= 300)
    got = sub.records()
    assert sorted(o.obs_id for o in got if isinstance(o, Observation)) == sorted(
        observation(i).obs_id for i in range(300)
    )
    sent = {observation(i, 90.0 + i % 7).obs_id: observation(i, 90.0 + i % 7) for i in range(300)}
    for o in got:
        if isinstance(o, Observation):
            assert (o.value, o.code, o.unit, o.time) == (sent[o.obs_id].value, sent[o.obs_id].code,
                                                         sent[o.obs_id].unit, sent[o.obs_id].time)  # fmt: skip
    assert any(isinstance(r, AlarmEvent) for r in got)
    await wait_for(lambda: uplink.sent_rows >= 2)
    await asyncio.sleep(0.2)
    assert (await queue.stats()).records == {}
    assert ("uplink_down", False) in [(r.kind, r.active) for r in reports]


async def test_broker_down_30s_loses_nothing_keeps_order_and_alarms_go_first(tmp_path, pki):
    broker = Broker(tmp_path, pki, persistent=True)
    broker.start()
    reports: list[TechnicalEvent] = []
    queue = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), commit_interval_ms=20),
                        reports.append)  # fmt: skip
    uplink = Uplink(UplinkSettings("127.0.0.1", broker.port, "localhost", "gw-1", *Pki.client_paths(pki, "gw-1"),
                                   connect_timeout_s=3, backoff_min_s=0.2, backoff_max_s=2.0),
                    queue, reports.append)  # fmt: skip
    tasks = [asyncio.create_task(queue.run()), asyncio.create_task(uplink.run())]
    sub = Subscriber("tail-durable", persistent=True)
    await sub.start(broker, pki)
    try:
        for i in range(100):
            queue.offer(observation(i))
        await wait_for(lambda: len(sub.records()) >= 100)
        broker.stop()  # SIGTERM: mosquitto saves the consumer's session
        await sub.stop()
        t0 = asyncio.get_running_loop().time()
        i = 100
        while asyncio.get_running_loop().time() - t0 < 30:  # 30 s outage, the device keeps sending
            for _ in range(10):
                queue.offer(observation(i))
                i += 1
            if i == 200:
                queue.offer(ALARM)
            await asyncio.sleep(1.0)
        total = i
        assert uplink.down_since is not None and uplink.sent_rows > 0
        assert (await queue.stats()).records.get("alarm") == 1
        broker.start()  # same port, same PKI, sessions restored
        sub2 = Subscriber("tail-durable", persistent=True)
        await sub2.start(broker, pki)
        await wait_for(lambda: len([r for r in sub2.records() if isinstance(r, Observation)]) >= total - 100, 60)
        first = next(r for r in sub2.records())
        assert isinstance(first, AlarmEvent)  # the backlog's alarm was delivered first
        ids = {r.obs_id for r in sub.records() + sub2.records() if isinstance(r, Observation)}
        assert ids == {observation(n).obs_id for n in range(total)}
        # Per-device order within the backlog and within the live stream.
        index = {observation(n).obs_id: n for n in range(total)}
        for replay in (True, False):
            seq = [index[o.obs_id] for topic, env in sub2.received if env.get("replay") is replay
                   for b in batches_of(env) for o in decode_batch(b) if isinstance(o, Observation)]  # fmt: skip
            assert seq == sorted(seq), f"replay={replay} out of order"
        await sub2.stop()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sub.stop()
        queue.close()
        broker.stop()


async def test_publishing_under_another_id_is_refused_and_nothing_is_deleted(tmp_path, broker, pki):
    reports: list[TechnicalEvent] = []
    queue = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key")), reports.append)
    # gw-2's certificate, but claiming to be gw-1: the ACL only lets gw-2 write under gw-2.
    settings = UplinkSettings(
        "127.0.0.1", broker.port, "localhost", "gw-1", *Pki.client_paths(pki, "gw-2"), connect_timeout_s=3,
        backoff_min_s=0.2, backoff_max_s=0.5,
    )  # fmt: skip
    uplink = Uplink(settings, queue, reports.append)
    tasks = [asyncio.create_task(queue.run()), asyncio.create_task(uplink.run())]
    try:
        for i in range(20):
            queue.offer(observation(i))
        await wait_for(lambda: any("PUBACK reason 0x87" in r.detail for r in reports), 15)
        assert uplink.sent_rows == 0
        assert (await queue.stats()).records.get("telemetry") == 20
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        queue.close()


async def test_many_rows_in_flight_stay_within_the_brokers_receive_maximum(tmp_path, broker, pki):
    reports: list[TechnicalEvent] = []
    queue = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), commit_max_records=2),
                        reports.append)  # fmt: skip
    settings = UplinkSettings("127.0.0.1", broker.port, "localhost", "gw-1", *Pki.client_paths(pki, "gw-1"), window=500)
    uplink = Uplink(settings, queue, reports.append)
    # 200 rows: far more than Mosquitto's Receive Maximum of 20. Written as separate rows
    # (grow=False, as while the uplink delivers): offline, the queue grows one row instead.
    for i in range(0, 400, 2):
        batch = encode_batch([observation(i), observation(i + 1)])
        queue.store.put(RecordClass.TELEMETRY, [(batch, 2)], durable=False, grow=False)
    tasks = [asyncio.create_task(queue.run()), asyncio.create_task(uplink.run())]
    try:
        await wait_for(lambda: uplink.sent_rows >= 200, 30)
        assert not [r for r in reports if r.kind == "uplink_down" and r.active and "Overflow" in r.detail]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        queue.close()


async def test_commands_ping_stats_flush_and_bad_requests(system, broker, pki):
    import json

    queue, uplink, _sub, _ = system
    queue.offer(observation(1))
    await wait_for(lambda: uplink.connected and uplink._client is not None)
    replies: list[dict[str, Any]] = []
    operator = gmqtt.Client("tail-operator")

    def on_message(client, topic, payload, qos, properties):
        replies.append(json.loads(payload))
        return 0

    operator.on_message = on_message
    await operator.connect("127.0.0.1", broker.port, ssl=client_context(pki.client("tail")))
    operator.subscribe("bedside/v1/gw-1/cmd/response", qos=1)
    await asyncio.sleep(0.3)
    try:
        for i, cmd in enumerate(["ping", "stats", "flush", "reboot"]):
            operator.publish("bedside/v1/gw-1/cmd", json.dumps({"cmd": cmd, "id": i}).encode(), qos=1)
        operator.publish("bedside/v1/gw-1/cmd", b"not json", qos=1)
        await wait_for(lambda: len(replies) >= 5)
        by_id = {r["id"]: r for r in replies}
        assert by_id[0]["ok"] and "pong" in by_id[0]
        assert by_id[1]["ok"] and "records" in by_id[1] and "fill" in by_id[1]
        assert by_id[2] == {"ok": True, "flushed": True, "id": 2}
        assert not by_id[3]["ok"] and "unknown cmd" in by_id[3]["error"]
        assert not by_id[None]["ok"]
    finally:
        await close_client(operator)


async def test_ota_status_set_before_connecting_is_sent_on_connect_and_retained(system, broker, pki):
    import json

    _queue, uplink, _sub, _ = system
    uplink.set_status("ota", {"state": "downloading", "release": "1.1.0"})  # before the uplink is up
    await wait_for(lambda: uplink.connected and uplink._client is not None)
    await asyncio.sleep(0.3)
    seen: list[dict[str, Any]] = []
    late = gmqtt.Client("tail-late")  # subscribes afterwards: gets the retained message

    def on_message(client, topic, payload, qos, properties):
        seen.append(json.loads(payload))
        return 0

    late.on_message = on_message
    await late.connect("127.0.0.1", broker.port, ssl=client_context(pki.client("tail")))
    late.subscribe("bedside/v1/gw-1/status/ota", qos=1)
    try:
        await wait_for(lambda: bool(seen))
        assert seen[-1] == {"release": "1.1.0", "state": "downloading"}  # retained, sent on connect
        uplink.set_status("ota", {"state": "installed", "release": "1.1.0"})
        await wait_for(lambda: seen[-1]["state"] == "installed")
    finally:
        await close_client(late)
