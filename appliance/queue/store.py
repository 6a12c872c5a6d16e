"""The SQLite store under the queue: WAL, versioned schema, byte budget, sealed rows.

Synchronous and single-threaded by design: one writer thread owns the
connection (see `appliance.queue.queue`). Rows are batches: one alarm or
technical event per row, telemetry grouped per commit. Priorities: alarm (0) >
technical (1) > telemetry (2); `pending()` hands rows out in that order.

What a power cut can lose: every commit here is synchronous=FULL (the WAL is
fsynced before the commit returns), so nothing that was committed. An alarm is
committed on its own before `put_alarm` returns. Telemetry waits in memory for
the next group commit, so a power cut loses at most the telemetry of one commit
interval (`commit_interval_ms`, default 100 ms) - never an alarm that was
committed, and never anything already in the file. (synchronous=NORMAL would
be faster but can roll back every commit since the last checkpoint.)

Budget policy: when the stored payload bytes exceed `max_bytes`, the oldest
telemetry rows are deleted (their observations counted as dropped), then the
oldest technical rows; alarm rows are never deleted for space.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from appliance.queue.seal import KeyError_, Sealer

__all__ = ["RecordClass", "Store", "StoreError", "StoreStats"]

CANARY: Final = b"bedside-store-canary"
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        "CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, cls INTEGER NOT NULL,"
        " created_ms INTEGER NOT NULL, count INTEGER NOT NULL, nbytes INTEGER NOT NULL, payload BLOB NOT NULL)",
        "CREATE INDEX records_cls ON records (cls, id)",
    ),
}
SCHEMA_VERSION: Final = max(MIGRATIONS)


class StoreError(Exception):
    """The store cannot be used (I/O, corruption that could not be set aside)."""


class RecordClass(enum.IntEnum):
    ALARM = 0
    TECHNICAL = 1
    TELEMETRY = 2


@dataclass(slots=True)
class StoreStats:
    rows: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    payload_bytes: int = 0
    max_bytes: int = 0
    dropped_records: int = 0
    file_bytes: int = 0
    schema_version: int = 0

    @property
    def fill(self) -> float:
        return self.payload_bytes / self.max_bytes if self.max_bytes else 0.0


class Store:
    def __init__(
        self,
        path: str | Path,
        sealer: Sealer,
        max_bytes: int,
        on_event: Callable[[str, str], None] = lambda kind, detail: None,
        *,
        repair: bool = True,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self.max_bytes = max_bytes
        self._sealer = sealer
        self._on_event = on_event
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
        self.payload_bytes = self._db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM records").fetchone()[0]
        self.dropped = int(self._meta("dropped") or b"0")

    # -- opening -----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        # Wait for a concurrent writer (the gateway, `bedside queue stats`) instead of failing.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_s)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            self._migrate(db)
            self._check_key(db)
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.replace(Path(str(aside) + suffix))
        self._on_event("store_corrupt", f"unreadable store moved to {aside.name} ({exc}); started a fresh one")

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"store schema {version} is newer than this gateway ({SCHEMA_VERSION})")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
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

    # -- writing -----------------------------------------------------------------
    def put(self, cls: RecordClass, payloads: list[tuple[bytes, int]], durable: bool) -> list[int]:
        """Insert (payload, record count) rows in one transaction; returns row ids."""
        now_ms = int(time.time() * 1000)
        rows = [(int(cls), now_ms, count, self._sealer.seal(p, bytes([cls]))) for p, count in payloads]
        db = self._db
        db.execute("PRAGMA synchronous=" + ("FULL" if durable else "NORMAL"))
        ids = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for cls_, created, count, blob in rows:
                cur = db.execute(
                    "INSERT INTO records (cls, created_ms, count, nbytes, payload) VALUES (?, ?, ?, ?, ?)",
                    (cls_, created, count, len(blob), blob),
                )
                ids.append(int(cur.lastrowid or 0))
                self.payload_bytes += len(blob)
            self._enforce_budget()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.payload_bytes = db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM records").fetchone()[0]
            raise
        return ids

    def _enforce_budget(self) -> None:
        dropped = 0
        for cls in (RecordClass.TELEMETRY, RecordClass.TECHNICAL):
            while self.payload_bytes > self.max_bytes:
                row = self._db.execute(
                    "SELECT id, nbytes, count FROM records WHERE cls = ? ORDER BY id LIMIT 1", (int(cls),)
                ).fetchone()
                if row is None:
                    break
                self._db.execute("DELETE FROM records WHERE id = ?", (row[0],))
                self.payload_bytes -= row[1]
                dropped += row[2]
        if dropped:
            self.dropped += dropped
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (str(self.dropped).encode(),))
            self._on_event("records_dropped", f"{dropped} records dropped for space ({self.dropped} in all)")

    def purge_older_than(self, cls: RecordClass, max_age_s: float) -> int:
        cutoff = int((time.time() - max_age_s) * 1000)
        with contextlib.closing(self._db.cursor()) as cur:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("SELECT COALESCE(SUM(nbytes), 0), COALESCE(SUM(count), 0) FROM records"
                        " WHERE cls = ? AND created_ms < ?", (int(cls), cutoff))  # fmt: skip
            nbytes, count = cur.fetchone()
            cur.execute("DELETE FROM records WHERE cls = ? AND created_ms < ?", (int(cls), cutoff))
            cur.execute("COMMIT")
        self.payload_bytes -= nbytes
        return int(count)

    # -- reading -----------------------------------------------------------------
    def pending(self, limit: int, after_id: int = 0) -> list[tuple[int, RecordClass, bytes]]:
        """Up to `limit` rows, alarms first, then technical, then telemetry, oldest first."""
        rows = self._db.execute(
            "SELECT id, cls, payload FROM records WHERE id > ? ORDER BY cls, id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [(i, RecordClass(c), self._sealer.open(p, bytes([c]))) for i, c, p in rows]

    def outbox(
        self,
        limit: int,
        exclude: frozenset[int],
        classes: tuple[RecordClass, ...] = tuple(RecordClass),
        created_from_ms: int | None = None,
        created_before_ms: int | None = None,
    ) -> list[tuple[int, RecordClass, int, bytes]]:
        """Rows for the uplink: (id, class, created_ms, payload), by class then age, skipping in-flight ids."""
        if limit <= 0:
            return []
        clauses = [f"cls IN ({','.join('?' * len(classes))})"]
        args: list[int] = [int(c) for c in classes]
        # "NOT IN (NULL)" matches nothing in SQL, so an empty exclusion drops the clause.
        if exclude:
            clauses.append(f"id NOT IN ({','.join('?' * len(exclude))})")
            args += exclude
        if created_from_ms is not None:
            clauses.append("created_ms >= ?")
            args.append(created_from_ms)
        if created_before_ms is not None:
            clauses.append("created_ms < ?")
            args.append(created_before_ms)
        rows = self._db.execute(
            f"SELECT id, cls, created_ms, payload FROM records WHERE {' AND '.join(clauses)} ORDER BY cls, id LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [(i, RecordClass(c), t, self._sealer.open(p, bytes([c]))) for i, c, t, p in rows]

    def iter_all(self, chunk: int = 500) -> Iterator[tuple[int, RecordClass, bytes]]:
        cur = self._db.execute("SELECT id, cls, payload FROM records ORDER BY cls, id")
        while rows := cur.fetchmany(chunk):
            for i, c, p in rows:
                yield i, RecordClass(c), self._sealer.open(p, bytes([c]))

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        self._db.execute("BEGIN IMMEDIATE")
        freed = self._db.execute(f"SELECT COALESCE(SUM(nbytes), 0) FROM records WHERE id IN ({marks})", ids)
        self.payload_bytes -= freed.fetchone()[0]
        self._db.execute(f"DELETE FROM records WHERE id IN ({marks})", ids)
        self._db.execute("COMMIT")

    def stats(self) -> StoreStats:
        s = StoreStats(max_bytes=self.max_bytes, payload_bytes=self.payload_bytes, dropped_records=self.dropped)
        for cls, rows, count in self._db.execute("SELECT cls, COUNT(*), SUM(count) FROM records GROUP BY cls"):
            s.rows[RecordClass(cls).name.lower()] = rows
            s.records[RecordClass(cls).name.lower()] = count
        s.schema_version = self._db.execute("PRAGMA user_version").fetchone()[0]
        s.file_bytes = sum(
            Path(str(self.path) + x).stat().st_size for x in ("", "-wal") if Path(str(self.path) + x).exists()
        )
        return s

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (also what SQLite does on close)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self._db.close()
