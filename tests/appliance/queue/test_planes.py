"""The clinical planes in the store: unpaired data on its own class and topic, held for
release, withheld by consent; expiry and purge audited."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import cbor2

from appliance.core.model import Observation
from appliance.queue.queue import QueueSettings, RecordQueue
from appliance.queue.records import decode_batch
from appliance.uplink.client import Uplink, UplinkSettings
from appliance.uplink.envelope import batches_of
from tests.appliance.queue.test_records import observation
from tests.integration.helpers import until

NOW = datetime.now(UTC)


def paired(i: int, patient: str = "MRN-1", **kw: Any) -> Observation:
    return replace(observation(i), patient_id=patient, quarantine=False, received=NOW, **kw)


def unpaired(i: int, device: str = "masimo-1", bed: str = "ICU-1", received: datetime = NOW) -> Observation:
    return replace(observation(i), device_id=device, bed_id=bed, received=received, patient_id=None, quarantine=True)


class TopicClient:
    """In-memory twin of the MQTT client: acknowledges at once, keeps records per topic leaf."""

    def __init__(self) -> None:
        self._package_handler = SimpleNamespace(_connack_properties={"receive_maximum": [20]})
        self.by_leaf: dict[str, list[Observation]] = {}

    def publish_tracked(
        self, topic: str, payload: bytes, retain: bool = False, properties: Mapping[str, Any] | None = None
    ) -> asyncio.Future[int]:
        leaf = topic.rsplit("/", 1)[1]
        for batch in batches_of(cbor2.loads(payload)):
            self.by_leaf.setdefault(leaf, []).extend(r for r in decode_batch(batch) if isinstance(r, Observation))
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        fut.set_result(0)
        return fut


def queue_at(tmp_path, **kw: Any) -> RecordQueue:
    settings = QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), quarantine_plane=True, **kw)
    return RecordQueue(settings, lambda e: None)


async def test_unpaired_data_goes_to_quarantine_never_telemetry_and_withheld_never_leaves(tmp_path):
    q = queue_at(tmp_path)
    q.offer(paired(0))
    q.offer(unpaired(1))
    q.offer(paired(2, patient="MRN-2", flags=frozenset({"consent_withheld"})))
    await q.flush()
    st = await q.stats()
    assert st.records == {"telemetry": 1, "unpaired": 1, "withheld": 1}
    uplink = Uplink(UplinkSettings("h", 1, "h", "gw", "a", "b", "c"), q, lambda e: None)
    client, lost = TopicClient(), asyncio.Event()
    drain = asyncio.create_task(uplink._drain(client, lost, 0))  # type: ignore[arg-type]
    await until(lambda: uplink.sent_rows == 2, 10)
    await asyncio.sleep(0.2)  # nothing else is sent
    lost.set()
    await asyncio.gather(drain, return_exceptions=True)
    assert {leaf: [o.patient_id for o in recs] for leaf, recs in client.by_leaf.items()} == {
        "telemetry": ["MRN-1"], "quarantine": [None]}  # fmt: skip
    # Delivered quarantine is kept on the box (held) for release; withheld data never left.
    assert (await q.stats()).records == {"held": 1, "withheld": 1}
    q.close()


async def test_release_takes_only_the_device_at_its_bed_since_the_patient_arrived(tmp_path):
    q = queue_at(tmp_path)
    before = NOW - timedelta(hours=2)
    for i, (dev, bed, at) in enumerate([("m", "ICU-1", NOW), ("m", "ICU-1", before), ("m", "ICU-2", NOW),
                                        ("other", "ICU-1", NOW), ("m", "ICU-1", NOW)]):  # fmt: skip
        q.offer(unpaired(i, dev, bed, at))
    await q.flush()
    taken = await q.take_held("m", "ICU-1", int((NOW - timedelta(minutes=5)).timestamp() * 1000))
    assert sorted(o.obs_id for o in taken) == sorted([observation(0).obs_id, observation(4).obs_id])
    assert (await q.stats()).records["unpaired"] == 3  # the rest stays, nothing lost
    await q.delete([r[0] for r in await q.outbox(10, frozenset())])  # delivered: kept as held
    assert (await q.stats()).records == {"held": 3}
    assert [o.obs_id for o in await q.take_held("m", "ICU-1", 0)] == [observation(1).obs_id]  # the older one
    assert (await q.stats()).records == {"held": 2}
    q.close()


async def test_quarantine_and_withheld_data_expire_and_each_purge_is_audited(tmp_path):
    q = queue_at(tmp_path, quarantine_ttl_s=0.2, withheld_ttl_s=0.2, purge_every_s=0.1, commit_interval_ms=20)
    audited: list[tuple[str, dict[str, object]]] = []
    q.audit = lambda kind, fields: audited.append((kind, dict(fields)))
    q.offer(unpaired(1))
    q.offer(paired(2, flags=frozenset({"consent_withheld"})))
    q.offer(paired(3))
    task = asyncio.create_task(q.run())
    try:
        await until(lambda: {k for k, _ in audited} == {"quarantine_expired", "withheld_purged"}, 10)
        await until(lambda: q.store.stats().records == {"telemetry": 1}, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    classes = sorted(str(f["class"]) for _, f in audited)
    assert classes == ["unpaired", "withheld"] and all(f["records"] == 1 for _, f in audited)
    q.close()
