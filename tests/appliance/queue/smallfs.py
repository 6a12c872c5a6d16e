"""A real, small file system for disk-full tests: a tmpfs mounted for one test.

Root only (mount); tests skip otherwise. `fill()` takes every free byte with a
ballast file, `free()` gives them back: the store sees real ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHUNK = 4096


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        # Lazy: a process under test may still hold a file open for a moment.
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path, leave_bytes: int = 0) -> Path:
    """Take all free space but `leave_bytes` with a ballast file."""
    ballast = fs / "ballast"
    st = os.statvfs(fs)
    want = max(0, st.f_bavail * st.f_frsize - leave_bytes)
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        written = 0
        while written < want:
            written += os.write(fd, b"\0" * CHUNK)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return ballast


def free(fs: Path) -> None:
    (fs / "ballast").unlink(missing_ok=True)


def footprint(db: Path) -> int:
    """Bytes the store takes on the disk: the database and its side files."""
    return sum(p.stat().st_size for p in (db, *(Path(f"{db}{x}") for x in ("-wal", "-shm", "-journal"))) if p.exists())
