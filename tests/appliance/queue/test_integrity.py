"""Start-up without a table scan (issue #15, READY <= 1 s): the page check runs after
READY beside the writer, and the size accounting is kept by triggers, not summed."""

import asyncio
import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import TechnicalEvent
from appliance.queue.integrity import IntegrityCheck, check
from appliance.queue.queue import QueueSettings, RecordQueue, merge_payloads
from appliance.queue.records import encode_batch
from appliance.queue.schema import MIGRATIONS
from appliance.queue.seal import Sealer, load_or_create_key
from appliance.queue.store import RecordClass, Store
from tests.appliance.queue.test_records import observation
from tests.appliance.queue.test_store import make


def fill(store: Store, rows: int, per_row: int = 3) -> None:
    for r in range(rows):
        obs = [observation(i) for i in range(r * per_row, (r + 1) * per_row)]
        store.put(RecordClass.TELEMETRY, [(encode_batch(obs), per_row)], durable=False)


def damage_a_middle_page(path: Path) -> None:
    """Overwrite one b-tree page in the middle of the file with garbage: SQLite still
    opens the file (its header is sound); only reading that page finds the damage."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    count = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    with path.open("r+b") as fh:
        fh.seek(page * (count // 2))
        fh.write(b"\xa5" * page)


def test_a_damaged_page_does_not_hold_the_open_and_is_reported_by_the_check(tmp_path):
    store = make(tmp_path)
    fill(store, 600)
    store.close()
    damage_a_middle_page(tmp_path / "store.db")
    events: list[tuple[str, str]] = []
    make(tmp_path, events=events).close()  # opens without reading every page
    assert events == []
    assert check(tmp_path / "store.db")  # but a full read finds it
    said: list[tuple[str, str]] = []
    checker = IntegrityCheck(tmp_path / "store.db", lambda k, d: said.append((k, d)))
    checker.start()
    assert checker.done.wait(10)
    assert [k for k, _ in said] == ["store_corrupt"] and "integrity check failed" in said[0][1]


def test_a_sound_store_passes_the_check_and_says_nothing(tmp_path):
    store = make(tmp_path)
    fill(store, 50)
    said: list[tuple[str, str]] = []
    checker = IntegrityCheck(tmp_path / "store.db", lambda k, d: said.append((k, d)))
    checker.start()  # while the store is open, as in the gateway
    fill(store, 50)
    assert checker.done.wait(10)
    assert said == [] and checker.problems == []
    store.close()


def test_the_running_queue_reports_a_damaged_store_as_a_technical_event(tmp_path):
    store = make(tmp_path)
    fill(store, 600)
    store.close()
    damage_a_middle_page(tmp_path / "store.db")
    reported: list[TechnicalEvent] = []

    async def main() -> None:
        q = RecordQueue(QueueSettings(str(tmp_path / "store.db"), str(tmp_path / "key")), reported.append)
        task = asyncio.create_task(q.run())
        for _ in range(200):
            if reported:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        q.close()

    asyncio.run(main())
    assert [e.kind for e in reported] == ["store_corrupt"]


def totals(store: Store) -> tuple[int, dict[str, int], dict[str, int]]:
    s = store.stats()
    return store.payload_bytes, s.rows, s.records


def scanned(store: Store) -> tuple[int, dict[str, int], dict[str, int]]:
    rows: dict[str, int] = {}
    records: dict[str, int] = {}
    for cls, n, c in store._db.execute("SELECT cls, COUNT(*), SUM(count) FROM records GROUP BY cls"):
        rows[RecordClass(cls).name.lower()] = n
        records[RecordClass(cls).name.lower()] = c
    return store._recount(), rows, records


OPS = st.lists(
    st.tuples(st.sampled_from(["put", "alarm", "delete", "compact", "budget", "purge", "reopen"]), st.integers(1, 40)),
    max_size=25,
)


@settings(max_examples=25, deadline=None)
@given(ops=OPS)
def test_totals_always_equal_a_scan_of_the_rows(tmp_path_factory, ops):
    tmp = tmp_path_factory.mktemp("totals")
    store = make(tmp, max_bytes=2 * 1024 * 1024)
    n = 0
    for op, k in ops:
        if op == "put":
            fill_from = [observation(n + i) for i in range(k)]
            store.put(RecordClass.TELEMETRY, [(encode_batch(fill_from), k)], durable=False)
            n += k
        elif op == "alarm":
            store.put(RecordClass.ALARM, [(encode_batch([observation(n)]), 1)], durable=True)
            n += 1
        elif op == "delete":
            store.delete([row[0] for row in store.pending(k)])
        elif op == "compact":
            plan = store.compact_plan(2**62, 600)
            store.compact_replace([(g, merge_payloads(g.payloads)) for g in plan])
        elif op == "budget":  # big rows past a small budget: the oldest telemetry goes
            big = [observation(n + i) for i in range(k * 50)]
            store.put(RecordClass.TELEMETRY, [(encode_batch(big), len(big))], durable=False)
            n += len(big)
        elif op == "purge":
            store.purge_older_than(RecordClass.TELEMETRY, -1)
        else:
            store.close()
            store = make(tmp, max_bytes=2 * 1024 * 1024)
        assert totals(store) == scanned(store), op
    store.close()


def test_an_older_store_gets_its_totals_when_migrated(tmp_path):
    key = load_or_create_key(tmp_path / "key", create=True)
    db = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for version in (1, 2, 3):  # the schema as schema-3 gateways left it
        for statement in MIGRATIONS[version]:
            db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    sealer = Sealer(key)
    db.execute("INSERT INTO meta VALUES ('canary', ?)", (sealer.seal(b"bedside-store-canary"),))
    for i in range(20):
        blob = sealer.seal(encode_batch([observation(i)]), bytes([RecordClass.TELEMETRY]))
        db.execute(
            "INSERT INTO records (cls, created_ms, count, nbytes, payload) VALUES (2, ?, 1, ?, ?)", (i, len(blob), blob)
        )
    db.close()
    store = Store(tmp_path / "store.db", sealer, 10**8)
    assert totals(store) == scanned(store) and store.stats().records == {"telemetry": 20}
    store.close()
