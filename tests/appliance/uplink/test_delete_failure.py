"""A store that cannot delete delivered rows (disk full) neither stops the uplink nor resends."""

import asyncio
from collections import Counter

import pytest

from appliance.queue.queue import QueueSettings, RecordQueue
from appliance.queue.records import encode_batch
from appliance.queue.store import RecordClass, StoreWriteError
from appliance.uplink.client import Uplink, UplinkSettings
from tests.appliance.queue.test_quarantine import AckingClient
from tests.appliance.queue.test_records import observation
from tests.integration.helpers import until


async def test_delivered_rows_whose_delete_fails_are_not_sent_again(tmp_path, monkeypatch: pytest.MonkeyPatch):
    q = RecordQueue(QueueSettings(str(tmp_path / "store.db"), str(tmp_path / "store.key")), lambda e: None)
    for i in range(10):
        q.store.put(RecordClass.TELEMETRY, [(encode_batch([observation(i)]), 1)], durable=True)
    q._loop = asyncio.get_running_loop()
    real_delete = q.store.delete
    failing = {"left": 3}

    def delete(ids: list[int]) -> None:
        if failing["left"] > 0:
            failing["left"] -= 1
            raise StoreWriteError("database or disk is full")
        real_delete(ids)

    monkeypatch.setattr(q.store, "delete", delete)
    uplink = Uplink(UplinkSettings("h", 1, "h", "gw", "a", "b", "c"), q, lambda e: None)
    client = AckingClient()
    lost = asyncio.Event()
    drain = asyncio.create_task(uplink._drain(client, lost, 0))  # type: ignore[arg-type]
    try:
        await until(lambda: failing["left"] == 0 and not uplink._undeleted, 10)
        await until(lambda: (q.store.stats().rows or {}) == {}, 10)
    finally:
        lost.set()
        await asyncio.gather(drain, return_exceptions=True)
    assert isinstance(drain.exception(), ConnectionError)  # the link ended, not the store error
    sent = Counter(bytes(b) for b in client.batches)
    assert len(sent) == 10 and set(sent.values()) == {1}, "every row once, none resent"
    q.close()
