"""The pieces that make the drain scale: cursors, range deletes, compaction,
the priority store thread, off-thread checkpoints (issue #15)."""

import asyncio
import functools
import threading
import time

from appliance.core.model import Observation
from appliance.queue.checkpoint import Checkpointer
from appliance.queue.queue import QueueSettings, RecordQueue, merge_payloads
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.store import RecordClass
from appliance.queue.upkeep import id_runs
from appliance.queue.worker import Priority, PriorityWorker
from tests.appliance.queue.test_records import observation
from tests.appliance.queue.test_store import make


def put_rows(store, start: int, rows: int, per_row: int = 3) -> list[int]:
    ids = []
    for r in range(rows):
        obs = [observation(i) for i in range(start + r * per_row, start + (r + 1) * per_row)]
        ids += store.put(RecordClass.TELEMETRY, [(encode_batch(obs), per_row)], durable=False)
    return ids


def obs_ids(payloads) -> list[str]:
    return [r.obs_id for p in payloads for r in decode_batch(p) if isinstance(r, Observation)]


def test_id_runs_only_join_consecutive_ids():
    assert id_runs([5, 3, 4, 9, 1, 10, 4]) == [(1, 1), (3, 5), (9, 10)]
    assert id_runs([]) == []


def test_range_delete_removes_exactly_the_delivered_rows(tmp_path):
    store = make(tmp_path)
    ids = put_rows(store, 0, 10)
    kept = ids[4]  # not delivered, in the middle of the delivered ones
    store.delete([i for i in ids if i != kept])
    assert [r[0] for r in store.pending(100)] == [kept]
    assert store.payload_bytes == store._recount()


def test_outbox_continues_after_the_cursor_per_class(tmp_path):
    store = make(tmp_path)
    put_rows(store, 0, 6)
    first = store.outbox(4, frozenset(), (RecordClass.TELEMETRY,))
    last = first[-1]
    rest = store.outbox(10, frozenset(), (RecordClass.TELEMETRY,), after={RecordClass.TELEMETRY: (last[2], last[0])})
    assert [r[0] for r in first + rest] == [r[0] for r in store.outbox(10, frozenset(), (RecordClass.TELEMETRY,))]
    assert len(rest) == 2


def test_compaction_keeps_every_record_in_order_and_cuts_bytes(tmp_path):
    store = make(tmp_path)
    put_rows(store, 0, 400)
    before = obs_ids(p for _, _, _, p in store.outbox(10_000, frozenset()))
    store.checkpoint()
    used_before = store.stats().used_bytes
    cutoff = int(time.time() * 1000) + 1
    removed = 0
    while plan := store.compact_plan(cutoff, 150, target_records=300):
        removed += store.compact_replace([(g, merge_payloads(g.payloads)) for g in plan])
    rows = store.outbox(10_000, frozenset())
    assert obs_ids(p for _, _, _, p in rows) == before  # every record, in age order
    assert removed == 400 - len(rows) and len(rows) <= 6  # 1,200 records in rows of up to 300
    assert store.stats().records == {"telemetry": 1200} and store.payload_bytes == store._recount()
    store.checkpoint()
    assert store.stats().used_bytes < used_before * 0.6


def test_a_compaction_whose_rows_changed_meanwhile_leaves_them_as_they_are(tmp_path):
    store = make(tmp_path)
    ids = put_rows(store, 0, 10)
    plan = store.compact_plan(int(time.time() * 1000) + 1)
    store.delete(ids[:1])  # delivered between the plan and the replacement
    assert store.compact_replace([(g, merge_payloads(g.payloads)) for g in plan]) == 0
    assert len(store.outbox(100, frozenset())) == 9


async def test_the_queue_does_not_compact_while_the_uplink_delivers(tmp_path):
    q = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), compact_after_s=0.001),
                    lambda e: None)  # fmt: skip
    put_rows(q.store, 0, 20)
    await asyncio.sleep(0.01)
    q.delivering = True
    assert await q.compact() == 0
    q.delivering = False
    assert await q.compact() == 19
    q.close()


def test_the_store_thread_takes_an_alarm_before_bulk_work_already_waiting():
    worker = PriorityWorker("test-store")
    gate = threading.Event()
    order: list[str] = []
    worker.submit(Priority.BULK, gate.wait)  # the job running when the others arrive
    futs = [worker.submit(Priority.BULK, functools.partial(order.append, f"bulk{n}")) for n in range(3)]
    futs.append(worker.submit(Priority.IDLE, lambda: order.append("idle")))
    futs.append(worker.submit(Priority.ALARM, lambda: order.append("alarm")))
    gate.set()
    for f in futs:
        f.result(2)
    assert order == ["alarm", "bulk0", "bulk1", "bulk2", "idle"]
    failing = worker.submit(Priority.BULK, lambda: 1 / 0)
    assert isinstance(failing.exception(2), ZeroDivisionError)
    worker.shutdown()


async def test_while_the_queue_runs_commits_never_checkpoint_a_thread_does(tmp_path):
    q = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key")), lambda e: None)
    q._checkpointer = Checkpointer(q.store.path, 64 * 1024, every_s=0.02)
    task = asyncio.create_task(q.run())
    try:
        for i in range(3000):
            q.offer(observation(i))
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        await q.flush()
        assert q.store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        deadline = time.monotonic() + 5
        while q._checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert q._checkpointer.checkpoints > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        q.close()


async def test_a_row_that_opens_but_does_not_decode_is_quarantined_not_a_blocker(tmp_path):
    q = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), compact_after_s=0.001),
                    lambda e: None)  # fmt: skip
    q._loop = asyncio.get_running_loop()
    put_rows(q.store, 0, 3)
    q.store.put(RecordClass.TELEMETRY, [(b"not cbor", 3)], durable=False)
    put_rows(q.store, 100, 3)
    await asyncio.sleep(0.01)
    assert await q.compact() == 0  # the bad row's group waits; the bad row is set aside
    assert [u.count for u in q.store.quarantined()] == [3]
    assert await q.compact() == 5
    assert q.store.stats().records == {"telemetry": 18}
    q.close()


async def test_back_to_back_deletes_let_the_wal_rewind_so_no_writer_is_held_by_a_truncate(tmp_path, monkeypatch):
    """A drain deletes as fast as the broker acks. Without pauses the WAL never rewound
    and grew past its allowance, and the store's TRUNCATE backstop - which blocks every
    writer, alarms too - ran on the store thread (34-55 ms, issue #15)."""
    import appliance.queue.store as store_module

    over: list[int] = []
    real = store_module.keep_wal_small  # type: ignore[attr-defined]

    def watched(db, path, limit_bytes):
        size = (tmp_path / "q.db-wal").stat().st_size
        if size > limit_bytes:
            over.append(size)
        real(db, path, limit_bytes)

    monkeypatch.setattr(store_module, "keep_wal_small", watched)
    q = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key"), max_bytes=64 * 1024 * 1024),
                    lambda e: None)  # fmt: skip
    ids = put_rows(q.store, 0, 40_000)  # ~12 MB of 3-observation rows
    q.store.checkpoint()
    over.clear()  # filling (before the queue runs) may reach the backstop: not what is tested
    task = asyncio.create_task(q.run())
    try:
        await asyncio.sleep(0.05)
        for start in range(0, len(ids), 400):  # a drain's deletes, back to back
            await q.delete(ids[start : start + 400])
        assert q.store.stats().rows == {}
        assert over == [], f"WAL past its allowance of {q.store.wal_limit_bytes} B: {over[:3]}"
        assert q._checkpointer.checkpoints > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        q.close()
