"""The update lifecycle: one enum, one transition table, persisted after every step.

idle -> checking -> downloading -> verified -> installing -> installed (awaiting a
safe reboot) -> rebooting -> health_check -> committed | rolled_back | failed

The record is written atomically (temp file, fsync, rename, fsync of the
directory) on the data partition before the agent acts on a new state, so a power
cut at any step finds the last state on the next boot and resumes or rolls back
from there (see OtaAgent.resume).
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from appliance.core.transitions import TransitionTable

__all__ = ["TRANSITIONS", "OtaInput", "OtaRecord", "OtaState", "StateFile", "step"]


class OtaState(enum.Enum):
    IDLE = "idle"
    CHECKING = "checking"
    DOWNLOADING = "downloading"
    VERIFIED = "verified"
    INSTALLING = "installing"
    INSTALLED = "installed"  # awaiting a safe moment to reboot
    REBOOTING = "rebooting"
    HEALTH_CHECK = "health_check"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class OtaInput(enum.Enum):
    CHECK = "check"
    NOTHING_NEW = "nothing_new"
    FOUND = "found"
    DOWNLOADED = "downloaded"
    INSTALL = "install"
    INSTALLED = "installed"
    REBOOT = "reboot"
    BOOTED_NEW = "booted_new"
    BOOTED_OLD = "booted_old"  # the bootloader fell back: the new slot never came up
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    REFUSED = "refused"
    RETRY = "retry"  # a power cut mid-step: do the step again


_S, _I = OtaState, OtaInput
_DONE: Final = (_S.IDLE, _S.COMMITTED, _S.ROLLED_BACK, _S.FAILED)
_MOVES: Final[dict[tuple[OtaState, OtaInput], OtaState]] = {
    **{(s, _I.CHECK): _S.CHECKING for s in _DONE},
    (_S.CHECKING, _I.NOTHING_NEW): _S.IDLE,
    (_S.CHECKING, _I.FOUND): _S.DOWNLOADING,
    (_S.CHECKING, _I.REFUSED): _S.FAILED,
    (_S.CHECKING, _I.RETRY): _S.IDLE,
    (_S.DOWNLOADING, _I.DOWNLOADED): _S.VERIFIED,
    (_S.DOWNLOADING, _I.REFUSED): _S.FAILED,
    (_S.DOWNLOADING, _I.RETRY): _S.DOWNLOADING,
    (_S.VERIFIED, _I.INSTALL): _S.INSTALLING,
    (_S.VERIFIED, _I.RETRY): _S.DOWNLOADING,  # re-verify the file from the partial/complete download
    (_S.INSTALLING, _I.INSTALLED): _S.INSTALLED,
    (_S.INSTALLING, _I.REFUSED): _S.FAILED,
    (_S.INSTALLING, _I.RETRY): _S.DOWNLOADING,  # RAUC activates a slot only at the end: install again
    (_S.INSTALLED, _I.REBOOT): _S.REBOOTING,
    (_S.REBOOTING, _I.BOOTED_NEW): _S.HEALTH_CHECK,
    (_S.REBOOTING, _I.BOOTED_OLD): _S.ROLLED_BACK,
    (_S.HEALTH_CHECK, _I.HEALTHY): _S.COMMITTED,
    (_S.HEALTH_CHECK, _I.UNHEALTHY): _S.ROLLED_BACK,
    (_S.HEALTH_CHECK, _I.BOOTED_NEW): _S.HEALTH_CHECK,  # power cut during the gate: check again
    (_S.HEALTH_CHECK, _I.BOOTED_OLD): _S.ROLLED_BACK,
}
TRANSITIONS: Final = TransitionTable("OTA lifecycle", _MOVES)
del _S, _I


def step(state: OtaState, event: OtaInput) -> OtaState:
    """The agent drives itself: an unlisted move is a bug (`UnknownTransition`, a ValueError)."""
    return TRANSITIONS.next(state, event)


@dataclass(slots=True)
class OtaRecord:
    state: OtaState = OtaState.IDLE
    release_path: str = ""
    release_version: str = ""
    release_length: int = 0
    from_version: str = ""
    bundle: str = ""  # verified file on the data partition
    boot_attempts: dict[str, int] = field(default_factory=dict)  # per release version
    given_up: list[str] = field(default_factory=list)  # versions never to try again
    deferred_since: float = 0.0  # wall-clock seconds; 0 = not deferring
    deferral_reported: bool = False
    error: str = ""
    time_floor: float = 0.0  # the latest wall-clock time this box has trusted

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OtaRecord:
        data = dict(data)
        data["state"] = OtaState(data.get("state", "idle"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> OtaRecord:
        try:
            return OtaRecord.from_json(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return OtaRecord()
        except (ValueError, TypeError, KeyError):
            # A record we cannot read is treated as a fresh start; RAUC's own slot
            # state still decides what boots, so nothing half-done is activated.
            return OtaRecord(error=f"{self.path}: unreadable OTA state, started fresh")

    def save(self, record: OtaRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(record.to_json(), f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
