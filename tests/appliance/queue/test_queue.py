import asyncio
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from appliance.core.model import AlarmEvent, TechnicalEvent
from appliance.core.vocab import AlarmEventState, Priority
from appliance.queue.queue import QueueSettings, RecordQueue, export
from appliance.queue.seal import Sealer, load_or_create_key
from appliance.queue.store import Store
from tests.appliance.queue.test_records import observation

ALARM = AlarmEvent(
    "a1", "spo2-low", "ICU-1", Priority.HIGH, "physiological", AlarmEventState.ACTIVE, datetime(2026, 1, 1, tzinfo=UTC)
)


def settings(tmp_path, **kw):
    return QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), **kw)


async def test_group_commit_and_alarms_first(tmp_path):
    reports: list[TechnicalEvent] = []
    q = RecordQueue(settings(tmp_path, commit_interval_ms=50, commit_max_records=1000), reports.append)
    task = asyncio.create_task(q.run())
    for i in range(2500):
        q.offer(observation(i))
    q.offer(ALARM)
    await asyncio.sleep(0.3)
    stats = await q.stats()
    assert stats.records == {"alarm": 1, "telemetry": 2500}
    assert stats.rows["telemetry"] <= 4  # grouped, not one row per observation
    assert stats.payload_bytes / 2500 < 45  # sealed CBOR, per observation
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    q.close()
    store = Store(tmp_path / "q.db", Sealer(load_or_create_key(tmp_path / "q.key", create=False)), 10**9)
    records = list(export(store))
    assert records[0] == ALARM and len(records) == 2501


async def test_fill_thresholds_and_drops_are_reported(tmp_path):
    reports: list[TechnicalEvent] = []
    q = RecordQueue(settings(tmp_path, max_bytes=60_000, commit_max_records=100), reports.append)
    task = asyncio.create_task(q.run())
    for i in range(5000):
        q.offer(observation(i))
        if i % 500 == 0:
            await asyncio.sleep(0.02)
    await q.flush()
    await asyncio.sleep(0.05)
    kinds = [(r.kind, r.active) for r in reports]
    assert ("store_fill", True) in kinds
    assert ("records_dropped", True) in kinds
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    q.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from datetime import UTC, datetime
    from appliance.core.model import AlarmEvent
    from appliance.queue.queue import QueueSettings, RecordQueue

    async def main():
        q = RecordQueue(QueueSettings(sys.argv[1], sys.argv[2]), lambda e: None)
        for i in range(int(sys.argv[3])):
            await q.put_alarm(AlarmEvent(f"a{i}", "r", "B", "high", "physiological", "active",
                                         datetime.now(UTC)))
            print(i, flush=True)
        time.sleep(60)

    asyncio.run(main())
    """
)


def test_committed_alarms_survive_kill_9(tmp_path):
    db, key = str(tmp_path / "q.db"), str(tmp_path / "q.key")
    confirmed = -1
    for round_ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, db, key, str(3 + round_)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if int(line) == 2 + round_:
                break
        proc.kill()  # SIGKILL: no flush, no close
        proc.wait()
        proc.stdout.close()
        confirmed += 3 + round_
    store = Store(db, Sealer(load_or_create_key(key, create=False)), 10**9)
    alarms = [r for r in export(store) if isinstance(r, AlarmEvent)]
    assert len(alarms) == confirmed + 1
