import os
import stat

import pytest

from appliance.core.model import Observation
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.seal import KeyError_, Sealer, load_or_create_key
from appliance.queue.store import SCHEMA_VERSION, RecordClass, Store
from tests.appliance.queue.test_records import observation


def obs_id(record: object) -> str:
    assert isinstance(record, Observation)
    return record.obs_id


def make(tmp_path, max_bytes=10**8, events=None):
    key = load_or_create_key(tmp_path / "key", create=True)
    cb = (lambda k, d: events.append((k, d))) if events is not None else (lambda k, d: None)
    return Store(tmp_path / "store.db", Sealer(key), max_bytes, cb)


def test_key_file_is_created_0600_and_payloads_are_not_plaintext(tmp_path):
    store = make(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "key").st_mode) == 0o600
    store.put(RecordClass.TELEMETRY, [(encode_batch([observation(0)]), 1)], durable=False)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert b"masimo-1" not in raw and b"MDC_PULS" not in raw


def test_wrong_or_missing_or_open_key_is_a_clear_error(tmp_path):
    make(tmp_path).close()
    (tmp_path / "key").write_bytes(os.urandom(32))
    with pytest.raises(KeyError_, match="does not open this store"):
        make(tmp_path)
    with pytest.raises(KeyError_, match="key file missing"):
        load_or_create_key(tmp_path / "other", create=False)
    os.chmod(tmp_path / "key", 0o644)
    with pytest.raises(KeyError_, match="readable by others"):
        load_or_create_key(tmp_path / "key", create=False)


def test_priority_order_and_delete(tmp_path):
    store = make(tmp_path)
    tel = store.put(RecordClass.TELEMETRY, [(encode_batch([observation(0)]), 1)], durable=False)
    alarm = store.put(RecordClass.ALARM, [(encode_batch([observation(1)]), 1)], durable=True)
    assert [cls for _, cls, _ in store.pending(10)] == [RecordClass.ALARM, RecordClass.TELEMETRY]
    store.delete(alarm + tel)
    assert store.pending(10) == [] and store.payload_bytes == 0


def test_budget_drops_oldest_telemetry_never_alarms(tmp_path):
    events: list[tuple[str, str]] = []
    store = make(tmp_path, max_bytes=20_000, events=events)
    for i in range(5):
        store.put(RecordClass.ALARM, [(encode_batch([observation(i)]), 1)], durable=True)
    for i in range(200):
        store.put(
            RecordClass.TELEMETRY, [(encode_batch([observation(j) for j in range(i, i + 10)]), 10)], durable=False
        )
    s = store.stats()
    assert s.payload_bytes <= 20_000
    assert s.records["alarm"] == 5
    assert s.dropped_records > 0 and s.dropped_records % 10 == 0
    assert events and events[-1][0] == "records_dropped"
    newest = decode_batch(store.pending(1000)[-1][2])
    assert obs_id(newest[0]) == observation(199).obs_id  # the newest telemetry survived


def test_corrupt_file_is_moved_aside_and_a_fresh_store_starts(tmp_path):
    make(tmp_path).close()
    (tmp_path / "store.db").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"store.db{suffix}").unlink(missing_ok=True)
    events: list[tuple[str, str]] = []
    store = make(tmp_path, events=events)
    assert events[0][0] == "store_corrupt"
    aside = [p for p in os.listdir(tmp_path) if ".corrupt-" in p]
    assert aside, os.listdir(tmp_path)
    store.put(RecordClass.ALARM, [(encode_batch([observation(0)]), 1)], durable=True)
    assert store.stats().schema_version == SCHEMA_VERSION


def test_survives_reopen(tmp_path):
    store = make(tmp_path)
    store.put(RecordClass.ALARM, [(encode_batch([observation(3)]), 1)], durable=True)
    store.close()
    store = make(tmp_path)
    (row,) = store.pending(10)
    assert obs_id(decode_batch(row[2])[0]) == observation(3).obs_id


def test_a_locked_store_is_busy_not_corrupt(tmp_path):
    import sqlite3

    from appliance.queue.store import StoreError

    make(tmp_path).close()
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # another process keeps the file locked
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO meta VALUES ('x', x'00')")
    try:
        key = load_or_create_key(tmp_path / "key", create=False)
        with pytest.raises(StoreError, match="busy"):
            Store(tmp_path / "store.db", Sealer(key), 10**6, busy_timeout_s=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("store.db.corrupt-*"))


def test_inspection_never_moves_a_bad_store_aside(tmp_path):
    from appliance.queue.store import StoreError

    make(tmp_path).close()
    (tmp_path / "store.db").write_bytes(b"not a database" * 100)
    key = load_or_create_key(tmp_path / "key", create=False)
    with pytest.raises(StoreError, match="unreadable"):
        Store(tmp_path / "store.db", Sealer(key), 10**6, repair=False)
    assert not list(tmp_path.glob("store.db.corrupt-*"))


def test_footprint_with_wal_stays_within_the_budget(tmp_path):
    from tests.appliance.queue.smallfs import footprint

    budget = 1024 * 1024
    store = make(tmp_path, max_bytes=budget)
    worst = 0
    for i in range(400):
        batch = [observation(j) for j in range(i * 100, i * 100 + 100)]
        store.put(RecordClass.TELEMETRY, [(encode_batch(batch), 100)], durable=True)
        if i % 7 == 0:  # the uplink drains some rows now and then
            store.delete([row[0] for row in store.pending(3)])
        worst = max(worst, footprint(tmp_path / "store.db"))
    print(f"worst footprint {worst} of {budget} bytes")
    assert worst <= budget, worst
    assert store.stats().file_bytes <= budget and store.stats().used_bytes <= budget
    assert store.dropped > 0  # the budget was reached and enforced by dropping telemetry


@pytest.mark.parametrize("damage", ["zero-length", "directory"])
def test_empty_or_unreadable_store_is_corruption_not_a_new_store(tmp_path, damage):
    store = make(tmp_path)
    store.put(RecordClass.ALARM, [(encode_batch([observation(0)]), 1)], durable=True)
    store.close()
    db = tmp_path / "store.db"
    db.unlink()
    if damage == "zero-length":
        db.touch()
    else:
        db.mkdir()
    key = load_or_create_key(tmp_path / "key", create=False)
    from appliance.queue.store import StoreError

    with pytest.raises(StoreError, match="unreadable"):
        Store(db, Sealer(key), 10**6, repair=False)  # inspection: reported, never moved
    assert not list(tmp_path.glob("store.db.corrupt-*"))
    events: list[tuple[str, str]] = []
    store = make(tmp_path, events=events)
    assert [kind for kind, _ in events] == ["store_corrupt"]
    assert list(tmp_path.glob("store.db.corrupt-*"))
    assert store.pending(10) == []
    store.close()


def test_only_a_missing_path_is_a_new_store(tmp_path):
    events: list[tuple[str, str]] = []
    make(tmp_path, events=events).close()
    assert events == [] and not list(tmp_path.glob("store.db.corrupt-*"))


def test_under_a_big_budget_the_wal_is_folded_and_reused_not_grown(tmp_path):
    # 64 MB of WAL are allowed under 512 MB; checkpointing only at half of that made
    # the WAL a file that grew on every commit (each fsync a file-system journal commit).
    from appliance.queue.space import CHECKPOINT_MAX_PAGES

    store = make(tmp_path, max_bytes=512 * 1024 * 1024)
    page = store._db.execute("PRAGMA page_size").fetchone()[0]
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == CHECKPOINT_MAX_PAGES
    wal = tmp_path / "store.db-wal"
    sizes = []
    for i in range(2500):  # ~2.3 pages a grown commit: the WAL passes its threshold about 5 times
        store.put(RecordClass.TELEMETRY, [(encode_batch([observation(i)]), 1)], durable=True, grow=True)
        sizes.append(wal.stat().st_size)
    assert max(sizes) <= (CHECKPOINT_MAX_PAGES + 16) * (page + 24) + 32, max(sizes)
    assert max(sizes[1250:]) == max(sizes[:1250])  # reused from its start: not grown after the first folds
    assert [obs_id(r) for _i, _c, p in store.pending(10**4) for r in decode_batch(p)] == [
        observation(i).obs_id for i in range(2500)
    ]


def test_a_small_budget_still_checkpoints_at_half_its_wal_allowance(tmp_path):
    store = make(tmp_path, max_bytes=1024 * 1024)
    page = store._db.execute("PRAGMA page_size").fetchone()[0]
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == store.wal_limit_bytes // page // 2
