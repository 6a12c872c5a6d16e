"""The rule every private key on the box follows: it exists and only its owner can
read it (mode 0600 or stricter). The uplink's client key and a device listener's key
are checked by this one function."""

from __future__ import annotations

import stat
from pathlib import Path

from appliance.core.errors import BedsideConfigError

__all__ = ["KeyFileError", "check_key_file"]


class KeyFileError(BedsideConfigError):
    """A private key is missing, unreadable or readable by others (one line naming it)."""


def check_key_file(path: str, what: str) -> None:
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: {what} missing") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: {what} unreadable: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(f"{path}: {what} mode {mode:04o} is readable by others; chmod 600")
