"""The SQLite store under the queue: WAL, versioned schema, byte budget, sealed rows.

Synchronous and single-threaded by design: one writer thread owns the
connection (see `appliance.queue.worker`: alarm commits go before waiting bulk
work). What is done to stored rows (delivery cursors, range deletes, the budget,
compaction) is in `appliance.queue.upkeep`. Rows are batches: one alarm or
technical event per row, telemetry grouped per commit. Priorities: alarm (0) >
technical (1) > telemetry (2); `pending()` hands rows out in that order.

What a power cut can lose: every commit here is synchronous=FULL (the WAL is
fsynced before the commit returns), so nothing that was committed. An alarm is
committed on its own before `put_alarm` returns. Telemetry waits in memory for
the next group commit, so a power cut loses at most the telemetry of one commit
interval (`commit_interval_ms`, default 100 ms) - never an alarm that was
committed, and never anything already in the file. (synchronous=NORMAL would
be faster but can roll back every commit since the last checkpoint.)

Budget policy: `max_bytes` bounds everything the store puts on the disk, WAL
and side files included (see `appliance.queue.space`). Before a batch is
inserted, the oldest telemetry rows are deleted until it fits (their records
counted as dropped), then the oldest technical rows; alarm rows are never
deleted for space.

A write that fails (disk full, I/O error) raises `StoreWriteError` with the
transaction rolled back: nothing of it is in the store, and the caller still
holds the records (see `appliance.queue.hold`).

A store file that exists but is empty or unreadable is corruption, not a new
store: only a path that does not exist starts fresh silently. Rows whose
payload does not open (AES-GCM authenticates every byte) are moved to the
`quarantine` table and reported, so one damaged row cannot block delivery.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from appliance.core.vocab import TechnicalKind
from appliance.queue.grow import grown
from appliance.queue.schema import (
    CANARY,
    MIGRATIONS,
    SCHEMA_VERSION,
    RecordClass,
    StoreError,
    StoreStats,
    StoreWriteError,
    Unreadable,
)
from appliance.queue.seal import KeyError_, Sealer
from appliance.queue.space import (
    WAL_SHARE,
    check_file,
    configure_wal,
    describe,
    disk_free_bytes,
    keep_wal_small,
    page_bytes,
    page_estimate,
    set_aside,
    side_bytes,
)
from appliance.queue.upkeep import ORDER, Upkeep

__all__ = ["SCHEMA_VERSION", "RecordClass", "Store", "StoreError", "StoreStats", "StoreWriteError", "Unreadable"]


class Store(Upkeep):
    def __init__(
        self,
        path: str | Path,
        sealer: Sealer,
        max_bytes: int,
        on_event: Callable[[str, str], None] = lambda kind, detail: None,
        *,
        repair: bool = True,
        busy_timeout_s: float = 10.0,
        factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._factory = factory  # tests pass a connection that fails on demand
        self.max_bytes = max_bytes
        self.wal_limit_bytes = max(4096, int(max_bytes * WAL_SHARE))
        self._sealer = sealer
        self._on_event = on_event
        self._repair = repair
        self.unreadable: list[Unreadable] = []  # found by an inspection store (repair=False)
        self._open_row: int | None = None  # the telemetry row `put(grow=True)` may still add to
        self._sync: bool | None = None  # the connection's synchronous setting (FULL = True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.OperationalError as exc:
            # Busy or locked (another process writing) is not corruption: never set a
            # healthy store aside for it.
            raise StoreError(f"{self.path}: store busy or unavailable: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            if not repair:  # inspection tools never move the gateway's store
                raise StoreError(f"{self.path}: unreadable store: {exc}") from exc
            self._set_aside(exc)
            self._db = self._open()
        self.payload_bytes: int = self._total_bytes()
        self.dropped = int(self._meta("dropped") or b"0")
        self.used_bytes = self._used_bytes()
        self.disk_free_bytes = disk_free_bytes(self.path)

    # -- opening -----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        check_file(self.path)
        # Wait for a concurrent writer (the gateway, `bedside queue stats`) instead of failing.
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_s,
            factory=self._factory,
        )  # fmt: skip
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # The gateway checks its store's pages after READY, on a connection of its own
            # (`appliance.queue.integrity`: 1.5 s for a 72-hour store). Inspection tools
            # have no READY to keep and read every row anyway: they check first.
            if not self._repair and db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            configure_wal(db, self.wal_limit_bytes)
            # Debian's SQLite zeroes every deleted byte (secure_delete=1): each delivered
            # row was written to the WAL a second time as zeros (64 MB of WAL in a 1 s
            # drain, then a 150 ms truncate on the store thread). The payloads are sealed
            # (AES-GCM), so freed pages hold only ciphertext: FAST zeroes what costs no I/O.
            db.execute("PRAGMA secure_delete = FAST")
            self._migrate(db)
            self._check_key(db)
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, exc: Exception) -> None:
        try:
            aside = set_aside(self.path)
        except OSError as err:
            raise StoreError(f"{self.path}: unreadable store ({exc}) could not be moved aside: {err}") from err
        self._on_event(TechnicalKind.STORE_CORRUPT, f"unreadable store moved to {aside} ({exc}); started a fresh one")

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"store schema {version} is newer than this gateway ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")  # one transaction: a store is at one schema or the next, never between
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")

    def _check_key(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key = 'canary'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('canary', ?)", (self._sealer.seal(CANARY),))
            return
        try:
            ok = self._sealer.open(row[0]) == CANARY
        except KeyError_:
            ok = False
        if not ok:
            raise KeyError_(f"{self.path}: the configured key does not open this store")

    def _meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _used_bytes(self) -> int:
        return page_bytes(self._db)[0] + side_bytes(self.path)

    # -- writing -----------------------------------------------------------------
    def _write(self, body: Callable[[], None]) -> None:
        """Run `body` in one IMMEDIATE transaction; any failure rolls it back whole and
        raises StoreWriteError (SQLite may already have rolled back on SQLITE_FULL or
        an I/O error: a second ROLLBACK would only say "no transaction is active")."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            body()
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if db.in_transaction:
                # The connection rolls back anyway when the transaction is abandoned.
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            self.payload_bytes = self._total_bytes()
            raise StoreWriteError(f"{self.path}: write failed: {describe(exc)}") from exc
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self.payload_bytes = self._total_bytes()
            raise
        finally:
            self.disk_free_bytes = disk_free_bytes(self.path)
        self.payload_bytes = self._total_bytes()
        keep_wal_small(self._db, self.path, self.wal_limit_bytes)
        self.used_bytes = self._used_bytes()

    @property
    def fill(self) -> float:
        """Used share of the budget, or of what the disk can still give if that is less:
        a disk filled by something else fills the store too."""
        limit = self.max_bytes
        if self.disk_free_bytes is not None:
            limit = min(limit, self.used_bytes + self.disk_free_bytes)
        return self.used_bytes / limit if limit > 0 else 1.0

    def _total_bytes(self) -> int:
        """Payload bytes of every row, from `totals` (kept by triggers: no table scan)."""
        try:
            total: int = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM totals").fetchone()[0]
            return total
        except sqlite3.Error:
            return self.payload_bytes

    def _recount(self) -> int:
        """The same sum by scanning every row (tests check the totals against it)."""
        total: int = self._db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM records").fetchone()[0]
        return total

    def put(
        self,
        cls: RecordClass,
        payloads: list[tuple[bytes, int]],
        durable: bool,
        dropped: int = 0,
        *,
        grow: bool = False,
    ) -> list[int]:
        """Insert (payload, record count) rows in one transaction; returns row ids.

        `dropped` records lost before they reached the store are added to the
        persistent drop count in the same transaction. `grow` (one telemetry
        payload, while nothing is delivering): add it to the newest telemetry row
        if that row can take it (`appliance.queue.grow`), else start a new row."""
        now_ms = int(time.time() * 1000)
        rows = [(int(cls), now_ms, count, self._sealer.seal(p, bytes([cls]))) for p, count in payloads]
        grow = grow and cls is RecordClass.TELEMETRY and len(payloads) == 1
        open_row = self._open_row if grow else None
        db = self._db
        ids: list[int] = []
        for_space = [0]

        def body() -> None:
            bigger = grown(db, self._sealer, open_row, *payloads[0]) if open_row is not None else None
            incoming = page_estimate(len(bigger[0])) if bigger else sum(page_estimate(len(r[3])) for r in rows)
            for_space[0] = self._enforce_budget(incoming, dropped)
            if bigger is not None:
                blob, count = bigger
                cur = db.execute(
                    "UPDATE records SET count = ?, nbytes = ?, payload = ? WHERE id = ?",
                    (count, len(blob), blob, open_row),
                )
                if cur.rowcount == 1:  # else: dropped for space just now; a new row below
                    ids.append(int(open_row or 0))
                    return
            for cls_, created, count, blob in rows:
                cur = db.execute(
                    "INSERT INTO records (cls, created_ms, count, nbytes, payload) VALUES (?, ?, ?, ?, ?)",
                    (cls_, created, count, len(blob), blob),
                )
                ids.append(int(cur.lastrowid or 0))

        self._set_sync(durable)
        self._write(body)
        self._open_row = ids[-1] if grow else None
        # Counted and said only once committed: a rolled-back deletion dropped nothing.
        self.dropped += dropped + for_space[0]
        if for_space[0]:
            self._on_event(
                TechnicalKind.RECORDS_DROPPED, f"{for_space[0]} records dropped for space ({self.dropped} in all)"
            )
        return ids

    # -- reading -----------------------------------------------------------------
    def _opened(self, rows: list[tuple[int, int, int, int, bytes]]) -> list[tuple[int, RecordClass, int, bytes]]:
        """(id, class, created_ms, payload) of the rows that open; the others are quarantined."""
        out = []
        for row_id, cls, created, count, blob in rows:
            try:
                kind = RecordClass(cls)
                out.append((row_id, kind, created, self._sealer.open(blob, bytes([cls]))))
            except KeyError_ as exc:
                self.quarantine(row_id, kind, count, str(exc))
            except ValueError:  # a damaged class column: the row cannot even be labelled
                self.quarantine(row_id, RecordClass.TELEMETRY, count, f"unknown record class {cls}")
        return out

    def quarantine(self, row_id: int, cls: RecordClass, count: int, reason: str) -> None:
        """Move a row that does not open or decode out of `records` (an inspection
        store only notes it). The payload is kept for forensics, never delivered."""
        bad = Unreadable(row_id, cls, count, reason)
        if not self._repair:
            self.unreadable.append(bad)
            return
        now_ms = int(time.time() * 1000)

        def body() -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO quarantine SELECT id, cls, created_ms, count, payload, ?, ? FROM records"
                " WHERE id = ?",
                (reason, now_ms, row_id),
            )
            self._db.execute("DELETE FROM records WHERE id = ?", (row_id,))

        try:
            self._write(body)
        except StoreWriteError:
            return  # cannot move it now (disk full): skipped this time, moved on a later read
        self._on_event(TechnicalKind.STORE_CORRUPT, f"{bad}; moved to quarantine, delivery continues")

    def quarantined(self) -> list[Unreadable]:
        rows = self._db.execute("SELECT id, cls, count, reason FROM quarantine ORDER BY id").fetchall()
        return [Unreadable(i, RecordClass(c), n, r) for i, c, n, r in rows]

    def pending(self, limit: int, after_id: int = 0) -> list[tuple[int, RecordClass, bytes]]:
        """Up to `limit` rows, alarms first, then technical, then telemetry, oldest first."""
        self._open_row = None  # handed out: never grown after this
        rows = self._db.execute(
            f"SELECT {self._COLUMNS} FROM records WHERE id > ? ORDER BY cls, {ORDER} LIMIT ?", (after_id, limit)
        ).fetchall()
        return [(i, c, p) for i, c, _t, p in self._opened(rows)]

    def iter_all(self, chunk: int = 500) -> Iterator[tuple[int, RecordClass, int, bytes]]:
        """(id, class, record count, payload) of every row that opens, by class then age."""
        last = (-1, 0, 0)
        while True:
            rows = self._db.execute(
                f"SELECT {self._COLUMNS} FROM records WHERE (cls, created_ms, id) > (?, ?, ?)"
                f" ORDER BY cls, {ORDER} LIMIT ?",
                (*last, chunk),
            ).fetchall()
            if not rows:
                return
            last = (rows[-1][1], rows[-1][2], rows[-1][0])
            counts = {r[0]: r[3] for r in rows}
            for i, c, _t, p in self._opened(rows):  # quarantines between chunks, never mid-cursor
                yield i, c, counts[i], p

    def stats(self) -> StoreStats:
        s = StoreStats(max_bytes=self.max_bytes, payload_bytes=self.payload_bytes, dropped_records=self.dropped)
        for cls, rows, count in self._db.execute("SELECT cls, rows, records FROM totals WHERE rows > 0 ORDER BY cls"):
            if cls not in RecordClass._value2member_map_:  # a damaged class number
                continue
            s.rows[RecordClass(cls).name.lower()] = rows
            s.records[RecordClass(cls).name.lower()] = count
        s.schema_version = self._db.execute("PRAGMA user_version").fetchone()[0]
        s.quarantined_rows = self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        s.file_bytes = page_bytes(self._db)[1] + side_bytes(self.path)
        s.used_bytes = self._used_bytes()
        return s

    def automatic_checkpoints(self, on: bool) -> None:
        """Off while a `Checkpointer` folds the WAL from its own thread (see there)."""
        if on:
            configure_wal(self._db, self.wal_limit_bytes)
        else:
            self._db.execute("PRAGMA wal_autocheckpoint = 0")

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (also what SQLite does on close)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self._db.close()
