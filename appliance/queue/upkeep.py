"""What the store does to rows already stored: deliver (outbox), delete, make room, compact.

Split from `appliance.queue.store` (which opens, writes and reads) by
responsibility; `Store` mixes it in and owns the connection and the thread.

Drain at scale (issue #15): a 72 h backlog is ~2.6 M rows of 3 observations.
- `outbox` runs one query per class on the (cls, created_ms) index from a
  cursor the uplink keeps, so each call costs O(limit), not O(backlog); the
  uplink no longer needs an exclusion list of every row in flight.
- `delete` turns delivered ids into runs of consecutive ids: one range delete
  per run, never a statement per row. Only ids that were all delivered form a
  run, so a row in between that was not delivered is never deleted.
- `compact` merges small telemetry rows into large ones while nothing is
  delivering them: a row carries ~70 B of dictionary, seal and SQLite
  overhead, which at live commit sizes (3-13 observations) is most of its
  size. The merged row gets a fresh id (no in-flight id or failed delete can
  ever name it) and its first row's age, so age order stays delivery order.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from appliance.queue.held import HELD, keep_delivered_quarantine
from appliance.queue.schema import RecordClass
from appliance.queue.seal import Sealer
from appliance.queue.space import SHM_BYTES, page_bytes

__all__ = ["COMPACT_TARGET_RECORDS", "Cursor", "Group", "Upkeep", "id_runs"]

Cursor = tuple[int, int]  # (created_ms, id) of the last row handed out in a stream
COMPACT_TARGET_RECORDS: Final = 2000  # records per merged row: ~60 kB, a few pages
ORDER: Final = "created_ms, id"
# Making room drops the oldest rows of these classes in this order: data no one may
# receive first (withheld, held quarantine), then quarantine, telemetry, technical.
# Alarms are never dropped for space.
DROP_ORDER: Final = (
    RecordClass.WITHHELD,
    RecordClass.HELD,
    RecordClass.UNPAIRED,
    RecordClass.TELEMETRY,
    RecordClass.TECHNICAL,
)
# Payload bytes one outbox read hands out: bounds the store thread's time per read
# (reading and opening ~1 MiB: a few ms), which an alarm commit may wait for. By
# rows alone, 512 compacted rows were 30 MB and an alarm waited ~95 ms.
OUTBOX_MAX_BYTES: Final = 1024 * 1024


def id_runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted runs of consecutive ids as (first, last)."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


@dataclass(slots=True)
class Group:
    """Small rows to merge: the first row's age, their ids, record counts, payloads."""

    created_ms: int
    ids: list[int]
    counts: list[int]
    payloads: list[bytes]

    @property
    def count(self) -> int:
        return sum(self.counts)


class Upkeep:
    """Mixed into Store; these are the Store attributes it relies on."""

    _db: sqlite3.Connection
    _sealer: Sealer
    dropped: int
    max_bytes: int
    used_bytes: int
    _open_row: int | None
    _sync: bool | None
    wal_limit_bytes: int
    _COLUMNS: Final = "id, cls, created_ms, count, payload"

    def _write(self, body: Callable[[], None]) -> None:
        raise NotImplementedError

    def _opened(self, rows: list[tuple[int, int, int, int, bytes]]) -> list[tuple[int, RecordClass, int, bytes]]:
        raise NotImplementedError

    def _set_sync(self, durable: bool) -> None:
        if self._sync is not durable:  # a PRAGMA per commit was ~10 % of a live commit
            self._db.execute("PRAGMA synchronous=" + ("FULL" if durable else "NORMAL"))
            self._sync = durable

    # -- delivering ----------------------------------------------------------------
    def outbox(
        self,
        limit: int,
        exclude: frozenset[int],
        classes: tuple[RecordClass, ...] = tuple(RecordClass),
        *,
        created_from_ms: int | None = None,
        created_before_ms: int | None = None,
        after: Mapping[RecordClass, Cursor] | None = None,
        max_bytes: int = OUTBOX_MAX_BYTES,
    ) -> list[tuple[int, RecordClass, int, bytes]]:
        """Rows for the uplink: (id, class, created_ms, payload), by class then age,
        skipping `exclude` and, per class, everything up to the cursor in `after`;
        at least one row, then no more than `max_bytes` of payload."""
        self._open_row = None  # handed out (or may be): never grown after this
        out: list[tuple[int, RecordClass, int, bytes]] = []
        taken = 0
        for cls in classes:
            if len(out) >= limit:
                break
            clauses = ["cls = ?", "(created_ms, id) > (?, ?)"]
            start = (after or {}).get(cls, (-(2**62), 0))
            if created_from_ms is not None and created_from_ms > start[0]:
                start = (created_from_ms, 0)
            args: list[int] = [int(cls), *start]
            if created_before_ms is not None:
                clauses.append("created_ms < ?")
                args.append(created_before_ms)
            # "NOT IN (NULL)" matches nothing in SQL, so an empty exclusion drops the clause.
            if exclude:
                clauses.append(f"id NOT IN ({','.join('?' * len(exclude))})")
                args += exclude
            cursor = self._db.execute(
                f"SELECT {self._COLUMNS} FROM records WHERE {' AND '.join(clauses)} ORDER BY {ORDER} LIMIT ?",
                (*args, limit - len(out)),
            )
            rows = []
            for row in cursor:  # read lazily: rows past the byte bound are never read
                rows.append(row)
                taken += len(row[4])
                if taken >= max_bytes:
                    break
            cursor.close()
            out += self._opened(rows)
            if taken >= max_bytes:
                break
        return out

    def delete(self, ids: list[int]) -> None:
        """Delete delivered rows, one range statement per run of consecutive ids.
        synchronous=NORMAL: a delete lost to a power cut only sends rows again
        (the consumer drops duplicates by record id), and it spares an fsync."""
        runs = id_runs(ids)
        if not runs:
            return

        def body() -> None:
            for first, last in runs:
                # Delivered quarantine stays on the box for release (appliance/queue/held.py).
                keep_delivered_quarantine(self._db, self._sealer, first, last)
                self._db.execute("DELETE FROM records WHERE id BETWEEN ? AND ? AND cls != ?", (first, last, HELD))

        self._set_sync(False)
        self._write(body)

    # -- making room ---------------------------------------------------------------
    def _enforce_budget(self, incoming: int, dropped_before: int) -> int:
        """Delete the oldest telemetry, then technical rows, until `incoming` bytes fit;
        returns the records deleted (inside the caller's transaction)."""
        # The side files get their allowance, not their momentary size: the WAL
        # swings with checkpoints, and the drop decision must not swing with it.
        room = self.max_bytes - self.wal_limit_bytes - SHM_BYTES
        dropped = 0
        # Nothing but this connection adds pages, and used_bytes (pages and side files,
        # measured after the last write) is never below the pages: far from the budget,
        # three PRAGMAs per commit are not needed to know the batch fits.
        far = self.used_bytes + incoming <= room
        for cls in DROP_ORDER:
            while not far and page_bytes(self._db)[0] + incoming > room:
                row = self._db.execute(
                    f"SELECT id, nbytes, count FROM records WHERE cls = ? ORDER BY {ORDER} LIMIT 1", (int(cls),)
                ).fetchone()
                if row is None:
                    break
                self._db.execute("DELETE FROM records WHERE id = ?", (row[0],))
                dropped += row[2]
        total = self.dropped + dropped + dropped_before
        if dropped or dropped_before:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (str(total).encode(),))
        return dropped

    def purge_older_than(self, cls: RecordClass, max_age_s: float) -> int:
        cutoff = int((time.time() - max_age_s) * 1000)
        found = [0]

        def body() -> None:
            found[0] = self._db.execute(
                "SELECT COALESCE(SUM(count), 0) FROM records WHERE cls = ? AND created_ms < ?", (int(cls), cutoff)
            ).fetchone()[0]
            self._db.execute("DELETE FROM records WHERE cls = ? AND created_ms < ?", (int(cls), cutoff))

        self._write(body)
        return int(found[0])

    # -- compacting ----------------------------------------------------------------
    def compact_plan(
        self, created_before_ms: int, max_rows: int = 1000, target_records: int = COMPACT_TARGET_RECORDS
    ) -> list[Group]:
        """Groups of the oldest small telemetry rows created before `created_before_ms`
        (up to `max_rows` rows) to merge into rows of up to `target_records`. Only
        reads: the merging itself (CBOR decode and encode) runs off the store thread."""
        rows = self._db.execute(
            f"SELECT {self._COLUMNS} FROM records WHERE cls = ? AND created_ms < ? AND count < ? AND id != ?"
            f" ORDER BY {ORDER} LIMIT ?",
            # The row `put` may still grow is left out: merged meanwhile, its new records would be lost.
            (int(RecordClass.TELEMETRY), created_before_ms, target_records // 2, self._open_row or 0, max_rows),
        ).fetchall()
        counts = {r[0]: r[3] for r in rows}
        groups: list[Group] = []
        for row_id, _cls, created, payload in self._opened(rows):  # quarantines what does not open
            if not groups or groups[-1].count + counts[row_id] > target_records:
                groups.append(Group(created, [], [], []))
            g = groups[-1]
            g.ids.append(row_id)
            g.counts.append(counts[row_id])
            g.payloads.append(payload)
        return [g for g in groups if len(g.ids) > 1]

    def compact_replace(self, merged: list[tuple[Group, bytes]]) -> int:
        """Replace each group by its merged payload in one transaction; a group whose
        rows changed meanwhile (delivered, dropped for space) is left as it is.
        synchronous=NORMAL: a power cut keeps either the small rows or the merged
        one, whole. Returns the rows removed."""
        removed = [0]

        def body() -> None:
            for g, payload in merged:
                marks = ",".join("?" * len(g.ids))
                n, count = self._db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(count), 0) FROM records WHERE id IN ({marks})", g.ids
                ).fetchone()
                if n != len(g.ids) or count != g.count:  # delivered, dropped or grown meanwhile
                    continue
                blob = self._sealer.seal(payload, bytes([RecordClass.TELEMETRY]))
                self._db.execute(f"DELETE FROM records WHERE id IN ({marks})", g.ids)
                self._db.execute(
                    "INSERT INTO records (cls, created_ms, count, nbytes, payload) VALUES (?, ?, ?, ?, ?)",
                    (int(RecordClass.TELEMETRY), g.created_ms, g.count, len(blob), blob),
                )
                removed[0] += len(g.ids) - 1

        if merged:
            self._set_sync(False)
            self._write(body)
        return removed[0]
