"""The store's files on the disk: what they take, and what is done with damaged ones.

The budget counts the WAL, the -shm index and any -journal, not only the rows:
SQLite's default autocheckpoint (1000 pages) let the WAL alone reach 4 MB
under a 1 MiB budget. The WAL gets an allowance (`WAL_SHARE` of the budget):
SQLite checkpoints at half of it, or at its default 1000 pages if that comes
first, and the store truncates it past the allowance.

Why not later under a big budget (64 MB of WAL allowed under 512 MB): a WAL that
grows to 32 MB before its first checkpoint is a file that grows on every commit,
and an fsync of a growing file also commits the file system's journal, which
waits for everyone else's metadata. A WAL folded every 1000 pages is reused from
its start, and its fsyncs write only the commit's own frames (the queue benchmark:
raw sqlite3, at SQLite's default, was measured against a store at 32 MB and lost
a third of its commit rate to this, more with a build writing beside it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
from pathlib import Path
from typing import Final

__all__ = [
    "CHECKPOINT_MAX_PAGES",
    "SHM_BYTES",
    "SIDE_FILES",
    "WAL_SHARE",
    "check_file",
    "configure_wal",
    "describe",
    "disk_free_bytes",
    "keep_wal_small",
    "page_bytes",
    "page_estimate",
    "set_aside",
    "side_bytes",
]

SIDE_FILES: Final = ("-wal", "-shm", "-journal")
WAL_SHARE: Final = 0.125  # of the budget: the WAL's allowance before it is truncated
SHM_BYTES: Final = 32 * 1024  # the WAL index SQLite keeps next to the database
CHECKPOINT_MAX_PAGES: Final = 1000  # SQLite's own default: the latest a checkpoint comes


def side_bytes(path: Path) -> int:
    total = 0
    base = os.fspath(path)  # os.stat on strings: pathlib's parsing was most of a commit's stat cost
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(base + suffix).st_size
    return total


def page_bytes(db: sqlite3.Connection) -> tuple[int, int]:
    """(used, total) bytes of the database's pages, including the open transaction's changes."""
    page: int = db.execute("PRAGMA page_size").fetchone()[0]
    count: int = db.execute("PRAGMA page_count").fetchone()[0]
    free: int = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (count - free) * page, count * page


def configure_wal(db: sqlite3.Connection, limit_bytes: int) -> None:
    """Checkpoint at half the WAL allowance (at most CHECKPOINT_MAX_PAGES); truncate
    the file back to the allowance after."""
    page: int = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute(f"PRAGMA wal_autocheckpoint = {max(1, min(CHECKPOINT_MAX_PAGES, limit_bytes // page // 2))}")
    db.execute(f"PRAGMA journal_size_limit = {limit_bytes}")


def keep_wal_small(db: sqlite3.Connection, path: Path, limit_bytes: int) -> None:
    """Fold the WAL back and truncate it once it passes its allowance. A reader in
    another process can hold the checkpoint back; it is tried again next commit."""
    try:
        big = os.stat(os.fspath(path) + "-wal").st_size > limit_bytes
    except FileNotFoundError:
        return
    if big:
        # Disk full or busy: nothing is lost, the WAL stays until the next try.
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def page_estimate(nbytes: int, page: int = 4096) -> int:
    """Bytes of pages a row of `nbytes` will take: a small row shares a leaf page,
    a big one spills into overflow pages that carry page-4 bytes each."""
    if nbytes < page // 4:
        return nbytes + 16
    return (nbytes // (page - 4) + 1) * page


def disk_free_bytes(path: Path) -> int | None:
    """Bytes the file system under the store can still give (None if it cannot say)."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def check_file(path: Path) -> None:
    """SQLite takes an empty file for a new database: that would hide lost data.
    Only a path that does not exist is a new store; raises DatabaseError otherwise."""
    if not path.exists():
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise sqlite3.DatabaseError(f"store file unreadable: {exc}") from exc
    if not head:
        raise sqlite3.DatabaseError("store file is empty (zero length)")


def set_aside(path: Path) -> str:
    """Move the store and its side files to `<name>.corrupt-<stamp>`; returns that name."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", *SIDE_FILES):
        src = Path(str(path) + suffix)
        if src.exists():
            src.replace(Path(str(aside) + suffix))
    return aside.name


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return str(exc)
