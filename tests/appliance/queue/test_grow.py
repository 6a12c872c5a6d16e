"""Growing the newest telemetry row (issue #15: <= 40 B per observation at live
commit sizes): nothing handed out is ever changed, nothing is lost or doubled."""

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import Observation
from appliance.queue.grow import GROW_MAX_BYTES, GROW_MAX_RECORDS
from appliance.queue.queue import QueueSettings, RecordQueue, merge_payloads
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.store import RecordClass, Store
from tests.appliance.queue.test_records import observation
from tests.appliance.queue.test_store import make
from tests.bench.bench_queue import commit_sizes


def ids_in(payload: bytes) -> list[str]:
    return [r.obs_id for r in decode_batch(payload) if isinstance(r, Observation)]


def stored_ids(store: Store) -> list[str]:
    return [i for _row, _cls, _n, p in store.iter_all() for i in ids_in(p)]


def put(store: Store, start: int, k: int, grow: bool = True) -> list[str]:
    obs = [observation(i, 90.0 + i % 10) for i in range(start, start + k)]
    store.put(RecordClass.TELEMETRY, [(encode_batch(obs), k)], durable=True, grow=grow)
    return [o.obs_id for o in obs]


def test_live_commits_grow_few_rows_in_order_under_40_bytes_per_observation(tmp_path):
    store = make(tmp_path, max_bytes=512 * 1024 * 1024)
    expected: list[str] = []
    for k in commit_sizes(12_000):
        expected += put(store, len(expected), k)
    rows = store._db.execute("SELECT count, nbytes FROM records").fetchall()
    assert all(count <= GROW_MAX_RECORDS and nbytes <= GROW_MAX_BYTES + 64 for count, nbytes in rows)
    assert len(rows) < 12_000 / (GROW_MAX_RECORDS / 2)  # not one row per commit (~1,500 of them)
    assert stored_ids(store) == expected  # every record, once, in commit order
    store.checkpoint()
    per_obs = store.stats().used_bytes / len(expected)
    assert per_obs <= 40, per_obs


def test_a_row_handed_out_is_never_grown(tmp_path):
    store = make(tmp_path)
    first = put(store, 0, 5)
    ((row_id, _cls, _t, handed),) = store.outbox(10, frozenset())
    assert ids_in(handed) == first
    later = put(store, 5, 5)
    rows = dict(store._db.execute("SELECT id, count FROM records").fetchall())
    assert rows[row_id] == 5 and len(rows) == 2  # the handed-out row kept exactly what was sent
    store.delete([row_id])  # as after its PUBACK: only what was sent goes
    assert stored_ids(store) == later


def test_not_growing_writes_one_row_per_commit(tmp_path):
    store = make(tmp_path)
    for i in range(4):
        put(store, i * 3, 3, grow=False)
    assert store._db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 4


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 13), st.booleans()),
        st.tuples(st.just("deliver"), st.integers(1, 5), st.booleans()),
        st.tuples(st.just("compact"), st.integers(0, 0), st.booleans()),
        st.tuples(st.just("big"), st.integers(200, 900), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_nothing_is_lost_or_doubled_whatever_the_interleaving(tmp_path_factory, ops):
    """Puts (growing or not), deliveries (outbox, then delete what was handed out, or
    a delivery that fails and deletes nothing), compaction and budget drops in any order:
    every record is delivered or stored exactly once, or counted as dropped."""
    store = make(tmp_path_factory.mktemp("grow"), max_bytes=1024 * 1024)
    written: list[str] = []
    delivered: list[str] = []
    for op, k, flag in ops:
        if op == "put":
            written += put(store, len(written), k, grow=flag)
        elif op == "big":  # past the small budget: the oldest telemetry is dropped, counted
            written += put(store, len(written), k, grow=False)
        elif op == "deliver":
            rows = store.outbox(k, frozenset())
            if flag:  # PUBACKed: deleted
                delivered += [i for _row, _cls, _t, p in rows for i in ids_in(p)]
                store.delete([row[0] for row in rows])
        else:  # the queue plans, merges off the store thread, then replaces: puts run between
            plan = store.compact_plan(2**62, 600)
            if flag:
                written += put(store, len(written), 3)
            store.compact_replace([(g, merge_payloads(g.payloads)) for g in plan])
    kept = stored_ids(store)
    counts = Counter(delivered + kept)
    assert all(n == 1 for n in counts.values()), [i for i, n in counts.items() if n > 1][:3]
    assert set(counts) <= set(written)
    assert len(written) - len(counts) == store.dropped  # what is missing was counted


def test_the_queue_grows_rows_only_while_the_uplink_is_not_delivering(tmp_path):
    async def main() -> tuple[int, int]:
        q = RecordQueue(QueueSettings(str(tmp_path / "q.db"), str(tmp_path / "q.key")), lambda e: None)
        rows = []
        for delivering in (False, True):
            q.delivering = delivering
            before = q.store._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            for i in range(6):
                for j in range(3):
                    q.offer(observation(i * 3 + j + (100 if delivering else 0)))
                await q.flush()
            rows.append(q.store._db.execute("SELECT COUNT(*) FROM records").fetchone()[0] - before)
        q.close()
        return rows[0], rows[1]

    grown, separate = asyncio.run(main())
    assert grown == 1 and separate == 6
