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

Bulk writers wait for the checkpoints (`settle`): SQLite rewinds the WAL (and
reuses its file from the start) only for a write transaction that begins after a
checkpoint folded every frame, which back-to-back bulk writes never allowed.
A drain deletes rows far faster than it must (72 h in ~20 s against a 5-minute
goal), so without pauses the WAL outgrew its allowance and the backstop's
TRUNCATE - which blocks every writer - held an alarm commit for 40-55 ms
(issue #15: durable alarm commits stay under 10 ms p99 during a drain). Only the
uplink's deletes and compaction wait; alarm and telemetry commits never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Final

__all__ = ["Checkpointer"]

EVERY_S: Final = 0.2
SETTLE_FACTOR: Final = 2  # bulk writers wait while the WAL in use is past this many thresholds
SETTLE_MAX_S: Final = 1.0  # and never longer: a stuck checkpoint must not stop the drain


class Checkpointer:
    def __init__(self, path: Path, threshold_bytes: int, every_s: float = EVERY_S) -> None:
        self._path = path
        self._wal = Path(str(path) + "-wal")
        self._threshold = threshold_bytes
        self._every_s = every_s
        self._stop = threading.Event()
        self._kick = threading.Event()  # settle() asks for a checkpoint now
        self._thread = threading.Thread(target=self._run, name="bedside-checkpoint", daemon=True)
        self.checkpoints = 0
        self.pending_bytes = 0  # WAL frames the last checkpoint could not fold yet
        self.log_bytes = 0  # the WAL's length in use at the last checkpoint (not its file size)
        self._file_at_check = 0  # the WAL file's size then: growing past it means the log grows

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        self._thread.start()

    def _due(self) -> bool:
        """A checkpoint is worth trying: the WAL file is past the threshold. (After a
        complete checkpoint SQLite rewinds the WAL and reuses the file, so its size
        says nothing about what is left to fold: PASSIVE tells, at no cost when idle.)"""
        return self.wal_bytes() > self._threshold

    def _run(self) -> None:
        try:
            # timeout=0: never wait for a lock; a busy checkpoint is tried next tick.
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=0)
        except sqlite3.Error:
            return
        try:
            page: int = db.execute("PRAGMA page_size").fetchone()[0]
        except sqlite3.Error:
            db.close()
            return
        try:
            while not self._stop.is_set():
                self._kick.wait(self._every_s)
                self._kick.clear()
                if self._stop.is_set():
                    break
                self._file_at_check = self.wal_bytes()
                if not self._due():
                    self.pending_bytes = 0
                    self.log_bytes = self.wal_bytes()
                    continue
                with contextlib.suppress(sqlite3.Error):
                    _busy, frames, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    # Frames not yet in the database file (-1, -1 when not in WAL mode).
                    self.pending_bytes = max(0, frames - done) * page
                    self.log_bytes = max(0, frames) * page
                    self.checkpoints += 1  # last: settle() reads the two above once it moves
        finally:
            db.close()

    def wal_bytes(self) -> int:
        """The WAL file's size (SQLite reuses it from the start after a checkpoint)."""
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    def behind(self) -> bool:
        """The WAL in use is past SETTLE_FACTOR thresholds: it has not rewound lately
        (seen by the last checkpoint, or since then by the file growing past that size)."""
        if not self.started:
            return False
        soft = self._threshold * SETTLE_FACTOR
        if self.log_bytes > soft:
            return True
        size = self.wal_bytes()
        return size > soft and size > self._file_at_check

    async def settle(self) -> float:
        """Wait (up to SETTLE_MAX_S) until the WAL is back under SETTLE_FACTOR thresholds;
        returns the seconds waited. Called before bulk writes, never on the alarm path."""
        if not self.behind():
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        seen = self.checkpoints
        # Until a checkpoint that started after our last write has folded everything:
        # SQLite rewinds the WAL only for a transaction that begins on a fully folded
        # log, and back-to-back deletes never gave it one.
        while (self.checkpoints == seen or self.pending_bytes > 0) and loop.time() - start < SETTLE_MAX_S:
            self._kick.set()
            await asyncio.sleep(0.005)
        return loop.time() - start

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._kick.set()
        if self.started and self._thread.is_alive():
            self._thread.join(timeout_s)
