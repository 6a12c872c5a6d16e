"""What the store holds: its tables by schema version, record classes, errors, stats.

Schema 2 adds `quarantine`: rows whose payload no longer opens or decodes,
kept (sealed, as found) for forensics and never delivered.
Schema 3 orders rows by (class, age) in one index instead of (class, id): the
uplink asks for live data by `created_ms`, which without it scanned the whole
backlog (461 ms at 2.6 M rows), and a compacted row keeps its first row's age,
so it is delivered in its place. One index, not two: each costs ~12 B a row.
Schema 4 keeps rows, records and payload bytes per class in `totals`, maintained
by triggers in the same transaction as every insert, delete and update of
`records` (whoever writes them: the queue, compaction, quarantine, a bulk load).
Start-up and `stats` read three rows instead of summing the table (0.5 s for a
72-hour store, on the way to READY); a crash cannot leave the totals out of step.
Schema 5 adds the clinical plane's classes (issue 21) to `totals`: `unpaired`
(observations without a census-verified patient, sent on the quarantine topic),
`held` (the same kept on the box until released to a patient or expired) and
`withheld` (a patient's observations while their consent is withheld: never sent).
A new store takes every migration in one transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from appliance.core.errors import BedsideStoreError

__all__ = [
    "CANARY",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "RecordClass",
    "StoreError",
    "StoreStats",
    "StoreWriteError",
    "Unreadable",
]

CANARY: Final = b"bedside-store-canary"
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        "CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, cls INTEGER NOT NULL,"
        " created_ms INTEGER NOT NULL, count INTEGER NOT NULL, nbytes INTEGER NOT NULL, payload BLOB NOT NULL)",
        "CREATE INDEX records_cls ON records (cls, id)",
    ),
    2: (
        "CREATE TABLE quarantine (id INTEGER PRIMARY KEY, cls INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
        " count INTEGER NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL, quarantined_ms INTEGER NOT NULL)",
    ),
    3: ("DROP INDEX records_cls", "CREATE INDEX records_age ON records (cls, created_ms)"),
    4: (
        "CREATE TABLE totals (cls INTEGER PRIMARY KEY, rows INTEGER NOT NULL, records INTEGER NOT NULL,"
        " bytes INTEGER NOT NULL)",
        "INSERT INTO totals SELECT cls, COUNT(*), SUM(count), SUM(nbytes) FROM records GROUP BY cls",
        # Every class has its row, so the triggers only ever update (a row with a
        # damaged class number is in no total; it is quarantined when read).
        "INSERT OR IGNORE INTO totals VALUES (0, 0, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0), (3, 0, 0, 0), (4, 0, 0, 0),"
        " (5, 0, 0, 0)",
        "CREATE TRIGGER totals_insert AFTER INSERT ON records BEGIN"
        " UPDATE totals SET rows = rows + 1, records = records + NEW.count, bytes = bytes + NEW.nbytes"
        " WHERE cls = NEW.cls; END",
        "CREATE TRIGGER totals_delete AFTER DELETE ON records BEGIN"
        " UPDATE totals SET rows = rows - 1, records = records - OLD.count, bytes = bytes - OLD.nbytes"
        " WHERE cls = OLD.cls; END",
        "CREATE TRIGGER totals_update AFTER UPDATE OF cls, count, nbytes ON records BEGIN"
        " UPDATE totals SET rows = rows - 1, records = records - OLD.count, bytes = bytes - OLD.nbytes"
        " WHERE cls = OLD.cls;"
        " UPDATE totals SET rows = rows + 1, records = records + NEW.count, bytes = bytes + NEW.nbytes"
        " WHERE cls = NEW.cls; END",
    ),
    # Stores made at schema 4 before issue 21 (made since, migration 4 has these rows already).
    5: ("INSERT OR IGNORE INTO totals VALUES (3, 0, 0, 0), (4, 0, 0, 0), (5, 0, 0, 0)",),
}
SCHEMA_VERSION: Final = max(MIGRATIONS)


class StoreError(BedsideStoreError):
    """The store cannot be used (I/O, corruption that could not be set aside)."""


class StoreWriteError(StoreError):
    """A write failed (disk full, I/O error); the transaction was rolled back."""


class RecordClass(enum.IntEnum):
    ALARM = 0
    TECHNICAL = 1
    TELEMETRY = 2
    UNPAIRED = 3  # quarantine plane: sent on `quarantine`, never on `telemetry`
    HELD = 4  # quarantine plane, kept on the box: released to a patient or expired, never sent
    WITHHELD = 5  # consent withheld: kept on the box, never sent, purged after withheld_ttl_s


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A row whose payload does not open or decode (set aside, never delivered)."""

    row_id: int
    cls: RecordClass
    count: int
    reason: str

    def __str__(self) -> str:
        return f"row {self.row_id} ({self.cls.name.lower()}, {self.count} records): {self.reason}"


@dataclass(slots=True)
class StoreStats:
    rows: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    payload_bytes: int = 0
    max_bytes: int = 0
    dropped_records: int = 0
    file_bytes: int = 0  # database + -wal + -shm + -journal, as on the disk
    used_bytes: int = 0  # what the budget counts: used pages + side files
    quarantined_rows: int = 0
    schema_version: int = 0

    @property
    def fill(self) -> float:
        return self.used_bytes / self.max_bytes if self.max_bytes else 0.0
