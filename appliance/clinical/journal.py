"""The clinical journal: audit entries and FHIR resources, sealed, on their own SQLite file.

Two streams, both sealed with the store's AES-256-GCM key (the stream name is the
associated data, so a row cannot be moved from one table to the other):

- `audit`: every entry of the chain, kept after delivery (marked `sent`) so the
  chain can be exported from the box; only delivered entries beyond
  `audit_max_entries` are purged, oldest first (the verifier then reports where
  the export starts).
- `clinical`: FHIR resources waiting for the broker's PUBACK, deleted once
  delivered; beyond `clinical_max_rows` the oldest go (counted in `dropped`).

Why its own file and thread rather than a class in the queue's store: audit entries
must outlive delivery, and the queue's store thread must keep serving alarm commits
first; a second writer on the same SQLite file would make an alarm commit wait for
its lock. `offer_*` only append to bounded buffers (oldest dropped and counted: a
dropped audit entry shows as a gap the verifier names); the writer task commits
them every `commit_interval_s` through the one thread that owns the connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeVar

from appliance.clinical.chain import AuditEntry, AuditFormatError, from_line, to_line
from appliance.core.errors import BedsideStoreError
from appliance.queue.seal import Sealer

__all__ = ["AUDIT", "CLINICAL", "Journal", "JournalError"]

log = logging.getLogger(__name__)
AUDIT: Final = "audit"
CLINICAL: Final = "clinical"
MAX_PENDING: Final = 10_000  # per stream, in memory between commits
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL,"
    " sent INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_unsent ON audit (sent, seq)",
    "CREATE TABLE IF NOT EXISTS clinical (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL,"
    " payload BLOB NOT NULL)",
)
T = TypeVar("T")


class JournalError(BedsideStoreError):
    """The journal cannot be opened, read or written."""


class Journal:
    def __init__(
        self,
        path: str | Path,
        sealer: Sealer,
        *,
        audit_max_entries: int = 1_000_000,
        clinical_max_rows: int = 100_000,
        commit_interval_s: float = 0.2,
    ) -> None:
        self.path = Path(path)
        self._sealer = sealer
        self.audit_max_entries = audit_max_entries
        self.clinical_max_rows = clinical_max_rows
        self.commit_interval_s = commit_interval_s
        self._audit: deque[AuditEntry] = deque()
        self._clinical: deque[bytes] = deque()
        self.dropped = {AUDIT: 0, CLINICAL: 0}
        self.written = {AUDIT: 0, CLINICAL: 0}
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bedside-journal")
        self._db: sqlite3.Connection | None = None
        self._failing = False  # a failing disk is logged once per outage, not every commit
        try:
            self._call(self._open)
        except JournalError:
            self._thread.shutdown()
            raise

    # -- the thread that owns the connection -------------------------------------------
    def _call(self, fn: Callable[..., T], *args: object) -> T:
        return self._thread.submit(fn, *args).result()

    async def _async(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.wrap_future(self._thread.submit(fn, *args))

    def _open(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                db.execute(statement)
        except sqlite3.Error as exc:
            if db is not None:
                db.close()  # a file that is not a journal: its handle too (Python 3.13 warns of a leak)
            raise JournalError(f"{self.path}: cannot open the clinical journal: {exc}") from exc
        self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError(f"{self.path}: journal closed")
        return self._db

    # -- reading back --------------------------------------------------------------------
    def _open_row(self, stream: str, blob: bytes) -> bytes:
        return self._sealer.open(blob, stream.encode())

    def _entry(self, seq: int, blob: bytes) -> AuditEntry:
        try:
            return from_line(self._open_row(AUDIT, blob).decode(), f"{self.path}: audit seq {seq}")
        except (UnicodeDecodeError, BedsideStoreError) as exc:
            raise AuditFormatError(f"{self.path}: audit seq {seq}: {exc}") from None

    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest stored entry, None for an empty journal (start-up, one row)."""

        def read() -> tuple[int, str] | None:
            row = self._conn().execute("SELECT seq, payload FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            if row is None:
                return None
            entry = self._entry(row[0], row[1])
            return entry.seq, entry.hash

        return self._call(read)

    def export_audit(self) -> Iterator[AuditEntry]:
        """Every kept entry in sequence order (blocking; `bedside audit export`)."""
        rows = self._call(lambda: self._conn().execute("SELECT seq, payload FROM audit ORDER BY seq").fetchall())
        for seq, blob in rows:
            yield self._entry(seq, blob)

    def export_clinical(self) -> list[bytes]:
        """The FHIR resources not yet delivered (blocking; `bedside export --format fhir`)."""
        rows = self._call(lambda: self._conn().execute("SELECT payload FROM clinical ORDER BY id").fetchall())
        return [self._open_row(CLINICAL, r[0]) for r in rows]

    # -- hot path ------------------------------------------------------------------------
    def offer_audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)
        if len(self._audit) > MAX_PENDING:
            self._audit.popleft()
            self.dropped[AUDIT] += 1

    def offer_clinical(self, payload: bytes) -> None:
        self._clinical.append(payload)
        if len(self._clinical) > MAX_PENDING:
            self._clinical.popleft()
            self.dropped[CLINICAL] += 1

    def _bound(self) -> None:
        # What failed to write went back in front: the bound still holds, oldest go first.
        while len(self._audit) > MAX_PENDING:
            self._audit.popleft()
            self.dropped[AUDIT] += 1
        while len(self._clinical) > MAX_PENDING:
            self._clinical.popleft()
            self.dropped[CLINICAL] += 1

    # -- writer --------------------------------------------------------------------------
    def _write(self, audit: list[AuditEntry], clinical: list[bytes]) -> None:
        db, now = self._conn(), int(time.time() * 1000)
        seal = self._sealer.seal
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO audit (seq, created_ms, payload) VALUES (?, ?, ?)",
                [(e.seq, now, seal(to_line(e).encode(), AUDIT.encode())) for e in audit],
            )
            db.executemany(
                "INSERT INTO clinical (created_ms, payload) VALUES (?, ?)",
                [(now, seal(p, CLINICAL.encode())) for p in clinical],
            )
            self._trim(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise JournalError(f"{self.path}: write failed: {exc}") from exc

    def _trim(self, db: sqlite3.Connection) -> None:
        (count,) = db.execute("SELECT COUNT(*) FROM clinical").fetchone()
        if count > self.clinical_max_rows:
            over = count - self.clinical_max_rows
            db.execute("DELETE FROM clinical WHERE id IN (SELECT id FROM clinical ORDER BY id LIMIT ?)", (over,))
            self.dropped[CLINICAL] += over
        (kept,) = db.execute("SELECT COUNT(*) FROM audit").fetchone()
        if kept > self.audit_max_entries:
            db.execute(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE sent = 1 ORDER BY seq LIMIT ?)",
                (kept - self.audit_max_entries,),
            )

    async def commit(self) -> None:
        """Write what is buffered; on failure it stays buffered (bounded) and is retried."""
        audit, clinical = list(self._audit), list(self._clinical)
        if not audit and not clinical:
            return
        self._audit.clear()
        self._clinical.clear()
        try:
            await self._async(self._write, audit, clinical)
        except JournalError as exc:
            if not self._failing:
                log.error("%s; %d audit entries and %d resources held in memory", exc, len(audit), len(clinical))
            self._failing = True
            self._audit.extendleft(reversed(audit))
            self._clinical.extendleft(reversed(clinical))
            self._bound()
            return
        if self._failing:
            log.warning("%s: writes again", self.path)
            self._failing = False
        self.written[AUDIT] += len(audit)
        self.written[CLINICAL] += len(clinical)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.commit_interval_s)
            await self.commit()

    # -- delivery ------------------------------------------------------------------------
    async def pending(self, stream: str, limit: int) -> list[tuple[int, bytes]]:
        """Undelivered rows of a stream, oldest first, opened: (id or seq, payload)."""

        def read() -> list[tuple[int, bytes]]:
            sql = (
                "SELECT seq, payload FROM audit WHERE sent = 0 ORDER BY seq LIMIT ?"
                if stream == AUDIT
                else "SELECT id, payload FROM clinical ORDER BY id LIMIT ?"
            )
            return [(key, self._open_row(stream, blob)) for key, blob in self._conn().execute(sql, (limit,))]

        return await self._async(read)

    async def delivered(self, stream: str, keys: list[int]) -> None:
        def mark() -> None:
            db = self._conn()
            sql = "UPDATE audit SET sent = 1 WHERE seq = ?" if stream == AUDIT else "DELETE FROM clinical WHERE id = ?"
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, [(k,) for k in keys])
            db.execute("COMMIT")

        await self._async(mark)

    def close(self, timeout_s: float = 2.0) -> None:
        """Close; a connection stuck on a dead disk is abandoned after `timeout_s`
        (what was committed is safe: SQLite recovers its WAL on the next open)."""

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            self._thread.submit(shut).result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            log.error("journal %s did not close within %.1f s; abandoning it", self.path, timeout_s)
        self._thread.shutdown(wait=False)
