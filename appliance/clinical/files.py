"""The clinical plane's small files: written whole and atomically, changed under a lock.

The census file is written by the gateway only (the ADT feed); the consent file by
the gateway (ADT CON) and by `bedside consent set`, so a change to it is a
read-modify-write under an exclusive `flock` on a side file. A reader never sees a
half-written file (temporary file, fsync, rename). Blocking: the gateway calls
these from a thread, never on the alarm path. Files are 0640: patient
identifiers are not for every local user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from appliance.core.errors import BedsideInputError

__all__ = ["ClinicalFileError", "load_json", "save_json", "update_json"]

FILE_MODE: Final = 0o640


class ClinicalFileError(BedsideInputError):
    """A clinical file cannot be read or written (one line naming it)."""


def load_json(path: str | Path) -> Any:
    """The file's JSON, or None when it does not exist yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClinicalFileError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ClinicalFileError(f"{path}: not JSON ({exc})") from None


def save_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ClinicalFileError(f"{path}: cannot write: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise ClinicalFileError(f"{lock}: cannot lock: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def update_json(path: str | Path, change: Callable[[Any], Any]) -> Any:
    """Read, change and write `path` under its lock; returns what was written."""
    path = Path(path)
    with _locked(path):
        data = change(load_json(path))
        save_json(path, data)
        return data
