"""Growing the newest telemetry row instead of adding one per commit.

A live commit holds 3-13 observations; stored as its own row it carries ~60 B
of seal (nonce and tag), SQLite row and index, and batch dictionary, which at
those sizes was most of its 58-61 B per observation (issue #15: 72 h of a busy
bed did not fit the default budget). While the uplink is not delivering, each
commit instead rewrites the newest telemetry row with its records added, up to
`GROW_MAX_RECORDS` / `GROW_MAX_BYTES` (one leaf page: the rewrite costs the
same page write a new row did), then starts a new row.

Safety: a row is grown only if no reader has been handed it since it was
written (`Store` forgets the open row on every outbox read and never grows a
row compaction planned to merge); the merged row replaces the old one in the
same transaction as the commit, so a crash keeps either the old row or the
grown one, whole. A row that is gone (delivered, dropped for space), full, or
does not open is never grown: the commit becomes a new row.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from appliance.core.model import RecordFormatError
from appliance.queue.records import merge_encoded
from appliance.queue.schema import RecordClass
from appliance.queue.seal import KeyError_, Sealer

__all__ = ["GROW_MAX_BYTES", "GROW_MAX_RECORDS", "grown"]

GROW_MAX_RECORDS: Final = 200
GROW_MAX_BYTES: Final = 4000  # sealed payload; a SQLite leaf page keeps up to ~4,060 B inline
_AAD: Final = bytes([RecordClass.TELEMETRY])


def grown(db: sqlite3.Connection, sealer: Sealer, row_id: int, payload: bytes, count: int) -> tuple[bytes, int] | None:
    """(sealed merged payload, record count) for row `row_id` with `payload` added,
    or None when that row cannot take it."""
    row = db.execute(
        "SELECT count, payload FROM records WHERE id = ? AND cls = ?", (row_id, int(RecordClass.TELEMETRY))
    ).fetchone()
    if row is None or row[0] + count > GROW_MAX_RECORDS or len(row[1]) + len(payload) > GROW_MAX_BYTES:
        return None
    try:
        merged = merge_encoded(sealer.open(row[1], _AAD), payload)
    except (KeyError_, RecordFormatError):
        return None  # left for the reader to quarantine; the commit gets its own row
    return sealer.seal(merged, _AAD), row[0] + count
