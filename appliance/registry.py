"""Device registry: which bed a device is at and which patient it is paired to.

Stored with tinydb (a small human-readable JSON file on the data partition).
`bedside devices pair|unpair` write it; the running gateway reads a snapshot and
re-reads it when the file changes, off the alarm path. A device with no patient is
unpaired: its observations carry patient_id None and the quarantine mark.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tinydb import Query, TinyDB

from appliance.core.errors import BedsideConfigError

__all__ = ["Pairing", "Registry", "RegistryError", "file_writer"]


class RegistryError(BedsideConfigError):
    """The registry file cannot be read or written."""


def file_writer(path: Path) -> dict[str, object]:
    """The registry file's owner (uid and user name), the closest the gateway gets to who
    ran `bedside devices` when it picks a change up from the file. Blocking (a stat)."""
    try:
        uid: int | None = os.stat(path).st_uid
    except OSError:
        uid = None
    from appliance.clinical.operator import operator_fields

    return operator_fields(uid)


@dataclass(frozen=True, slots=True)
class Pairing:
    device_id: str
    bed_id: str
    patient_id: str | None
    by: str = ""  # who paired it (`bedside devices pair`: the operator's user name), for the audit trail


class Registry:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._snapshot: dict[str, Pairing] = {}
        self._mtime_ns: int | None = None

    def _open(self) -> TinyDB:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return TinyDB(self.path, indent=1, sort_keys=True)
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{self.path}: {exc}") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes and threads (flock on `<registry>.lock`): a check and
        the write it allows happen as one step; two writers never interleave in the file."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o660)
        except OSError as exc:
            raise RegistryError(f"{self.path}: cannot lock: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def pair(
        self,
        device_id: str,
        bed_id: str,
        patient_id: str | None,
        check: Callable[[list[Pairing]], None] | None = None,
        by: str = "",
    ) -> Pairing:
        """Pair, after `check(current pairings)` (it raises to refuse) under the same lock;
        `by`: who paired (the operator, or "census" for a pairing the census ended)."""
        pairing = Pairing(device_id, bed_id, patient_id, by)
        with self.locked():
            if check is not None:
                check(self.list())
            with self._open() as db:
                db.table("devices").upsert(
                    {"device_id": device_id, "bed_id": bed_id, "patient_id": patient_id, "by": by},
                    Query().device_id == device_id,
                )
        return pairing

    def unpair(self, device_id: str) -> bool:
        with self.locked(), self._open() as db:
            removed = db.table("devices").remove(Query().device_id == device_id)
        return bool(removed)

    def list(self) -> list[Pairing]:
        if not self.path.exists():
            return []
        try:
            with self._open() as db:
                rows = db.table("devices").all()
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self.path}: not a registry file ({exc.msg})") from exc
        return sorted(
            (Pairing(str(r["device_id"]), str(r["bed_id"]), r.get("patient_id"), str(r.get("by", ""))) for r in rows),
            key=lambda p: p.device_id,
        )

    def refresh(self) -> bool:
        """Re-read the file if it changed; keep the old snapshot if it is unreadable
        (e.g. caught mid-write). Returns True when the snapshot changed."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime_ns:
            return False
        try:
            pairings = self.list()
        except (RegistryError, KeyError):
            return False
        self._mtime_ns = mtime
        new = {p.device_id: p for p in pairings}
        changed = new != self._snapshot
        self._snapshot = new
        return changed

    def pairings(self) -> tuple[Pairing, ...]:
        """The snapshot's pairings (memory; see refresh)."""
        return tuple(self._snapshot.values())

    def get(self, device_id: str) -> Pairing | None:
        return self._snapshot.get(device_id)

    def snapshot(self) -> dict[str, Pairing]:
        """The pairings as last read (a copy): the gateway audits the difference on a change."""
        return dict(self._snapshot)

    # Stored-record cursors (meters that store readings): the last sequence number
    # received per device, so a reconnect fetches only newer records. Blocking
    # file I/O: the radio link calls these from a worker thread.
    def last_record(self, device_id: str) -> int | None:
        if not self.path.exists():
            return None
        with self._open() as db:
            rows = db.table("records").search(Query().device_id == device_id)
        return int(rows[0]["seq"]) if rows else None

    def set_last_record(self, device_id: str, seq: int) -> None:
        with self._open() as db:
            db.table("records").upsert({"device_id": device_id, "seq": seq}, Query().device_id == device_id)
