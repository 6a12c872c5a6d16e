"""WAL checkpoints on their own connection and thread, never inside an alarm's commit.

SQLite's automatic checkpoint runs inside whichever commit crosses the
threshold: during a drain (deletes write many WAL frames) that was sometimes
an alarm's commit, which then copied tens of MB into the database file before
returning. While the queue runs, its store connection has autocheckpoint off
and this thread folds the WAL back with PASSIVE checkpoints, which never take
the write lock: a writer (an alarm) appends to the WAL while a checkpoint runs.

The store's own TRUNCATE past the WAL allowance (`space.keep_wal_small`)
stays as the backstop. I/O errors are retried next tick, never raised: a
checkpoint that does not happen costs WAL space, which the budget counts.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Final

__all__ = ["Checkpointer"]

EVERY_S: Final = 0.2


class Checkpointer:
    def __init__(self, path: Path, threshold_bytes: int, every_s: float = EVERY_S) -> None:
        self._path = path
        self._wal = Path(str(path) + "-wal")
        self._threshold = threshold_bytes
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bedside-checkpoint", daemon=True)
        self.checkpoints = 0

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        self._thread.start()

    def _due(self, last_done: int) -> int | None:
        """The WAL's size if a checkpoint is due: past the threshold and grown since the
        last complete one (after a checkpoint, SQLite rewinds the WAL and reuses the file)."""
        try:
            size = self._wal.stat().st_size
        except FileNotFoundError:
            return None
        return size if size > self._threshold and size != last_done else None

    def _run(self) -> None:
        try:
            # timeout=0: never wait for a lock; a busy checkpoint is tried next tick.
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
        except sqlite3.Error:
            return
        last_done = 0
        try:
            while not self._stop.wait(self._every_s):
                size = self._due(last_done)
                if size is None:
                    continue
                with contextlib.suppress(sqlite3.Error):
                    busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    if not busy and frames == done:  # a reader can hold frames back: retry then
                        last_done = size
        finally:
            db.close()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self.started and self._thread.is_alive():
            self._thread.join(timeout_s)
