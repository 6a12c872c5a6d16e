"""The queue on a real, full file system (tmpfs): nothing is lost silently."""

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from appliance.core.model import AlarmEvent, Observation, TechnicalEvent
from appliance.core.vocab import AlarmEventState, Priority
from appliance.queue.queue import QueueSettings, RecordQueue, export
from appliance.queue.seal import Sealer, load_or_create_key
from appliance.queue.store import Store
from tests.appliance.queue.smallfs import fill, free, small_tmpfs
from tests.appliance.queue.test_records import observation
from tests.integration.helpers import until

MiB = 1024 * 1024


@pytest.fixture
def fs(tmp_path):
    with small_tmpfs(tmp_path / "data", "2m") as path:
        yield path


def alarm(i: int) -> AlarmEvent:
    return AlarmEvent(
        f"a{i}", "spo2-low", "ICU-1", Priority.HIGH, "physiological", AlarmEventState.ACTIVE, datetime.now(UTC)
    )


async def test_disk_full_holds_alarms_counts_every_drop_and_recovers(fs, caplog):
    caplog.set_level(logging.WARNING)
    reports: list[TechnicalEvent] = []
    q = RecordQueue(
        QueueSettings(str(fs / "q.db"), str(fs / "q.key"), max_bytes=MiB, commit_interval_ms=10,
                      commit_max_records=200, max_pending=1000, retry_max_ms=50),
        reports.append,
    )  # fmt: skip
    task = asyncio.create_task(q.run())
    await q.flush()
    fill(fs)
    offered = 0
    for i in range(8):
        q.offer(alarm(i))
        for _ in range(500):
            q.offer(observation(offered))
            offered += 1
        await asyncio.sleep(0.02)

    def said(kind: str, active: bool) -> bool:
        return any(r.kind == kind and r.active is active for r in reports)

    await until(lambda: said("store_failure", True))
    await until(lambda: said("records_dropped", True))
    await until(lambda: said("store_fill", True))  # the disk, not the budget, is the limit here
    assert not task.done()  # the writer keeps going: no crash, no restart loop
    assert q.hold.dropped.alarm == 0 and q.hold.dropped.telemetry > 0
    failure = next(r for r in reports if r.kind == "store_failure")
    assert "full" in failure.detail and "cannot rollback" not in failure.detail

    free(fs)
    await until(lambda: said("store_failure", False))
    await until(lambda: said("store_fill", False))
    await q.flush()
    assert len(q.hold) == 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    q.close()
    assert "cannot rollback" not in caplog.text

    store = Store(fs / "q.db", Sealer(load_or_create_key(fs / "q.key", create=False)), MiB, repair=False)
    records = list(export(store))
    assert {r.alarm_id for r in records if isinstance(r, AlarmEvent)} == {f"a{i}" for i in range(8)}
    telemetry = sum(isinstance(r, Observation) for r in records)
    # Every observation is in the store or in the persistent drop count (shown by `queue stats`).
    assert telemetry + store.stats().dropped_records == offered
    assert store.stats().dropped_records == q.hold.dropped.telemetry > 0
    store.close()


async def test_close_while_full_names_what_is_held(fs, caplog):
    caplog.set_level(logging.WARNING)
    q = RecordQueue(QueueSettings(str(fs / "q.db"), str(fs / "q.key"), max_bytes=MiB), lambda e: None)
    await q.flush()
    fill(fs)
    q.offer(alarm(1))
    for i in range(3000):
        q.offer(observation(i))
    await q.flush()  # never raises for a sick disk
    q.close()
    assert "1 alarm" in caplog.text and "held in memory" in caplog.text
