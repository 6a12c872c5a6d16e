"""The store's page check, after READY and beside the writer.

`PRAGMA quick_check` reads every page: 1.5 s for a 72-hour store, which before
issue #15 ran on the way to READY (and systemd's start timeout, and the alarm
path's first second). A file SQLite cannot open at all is still refused at open
(`Store`: set aside, a fresh store starts); what only a full read finds is looked
for here, once per start, on a connection and thread of its own.

The check is a read transaction: in WAL mode the writer (alarms first) goes on
committing while it runs, and nothing here writes. A damaged page is reported
as `store_corrupt` (a latching technical alarm): the gateway keeps running on the
store (rows that no longer open are quarantined as they are read, and `bedside
queue export` saves what still opens); moving a store aside while it is in use
would lose what is readable in it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from appliance.core.vocab import TechnicalKind

__all__ = ["IntegrityCheck"]

log = logging.getLogger(__name__)
MAX_PROBLEMS = 5  # quick_check lists up to this many; the first ones name the damage


class IntegrityCheck:
    """Runs `PRAGMA quick_check` once on its own thread; calls `report(kind, detail)`
    from that thread when the store is damaged (the queue hops it to the loop)."""

    def __init__(self, path: Path, report: Callable[[str, str], None]) -> None:
        self._path = path
        self._report = report
        self._thread = threading.Thread(target=self._run, name="bedside-integrity", daemon=True)
        self.done = threading.Event()
        self.problems: list[str] = []

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.problems = check(self._path)
        except sqlite3.OperationalError as exc:  # busy, locked, gone: not evidence of damage
            log.warning("store integrity check not run: %s", exc)
        finally:
            if self.problems:
                detail = "; ".join(self.problems[:2])
                self._report(
                    TechnicalKind.STORE_CORRUPT,
                    f"store integrity check failed ({detail}); running on, rows that do not open are"
                    " quarantined; `bedside queue export` saves what opens",
                )
            self.done.set()

    def join(self, timeout_s: float) -> None:
        if self.started:
            self._thread.join(timeout_s)


def check(path: Path) -> list[str]:
    """What quick_check found wrong (empty when the store is sound)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        rows = db.execute(f"PRAGMA quick_check({MAX_PROBLEMS})").fetchall()
    except sqlite3.OperationalError:
        raise  # busy or locked: says nothing about the pages
    except sqlite3.DatabaseError as exc:  # so damaged that the check itself stops
        return [str(exc)]
    finally:
        db.close()
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found
