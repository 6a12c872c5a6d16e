"""Who is at the control socket: the peer's uid (SO_PEERCRED), its user name, a badge.

Light on purpose (no cryptography): the control server imports it on every request.
"""

from __future__ import annotations

import pwd
import socket
import struct
from typing import Final

__all__ = ["MAX_BADGE_CHARS", "badge_problem", "operator_fields", "peer_uid"]

MAX_BADGE_CHARS: Final = 64
_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket | None) -> int | None:
    """The uid of the process at the other end of a Unix socket, None if unknown."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return None
    return int(uid)


def badge_problem(badge: object) -> str:
    """'' for an acceptable badge id (None or empty: none given; a short printable string), else why not."""
    if badge is None or badge == "":
        return ""
    if not isinstance(badge, str) or len(badge) > MAX_BADGE_CHARS or not badge.isprintable():
        return f"badge must be a printable string of 1 to {MAX_BADGE_CHARS} characters"
    return ""


def operator_fields(uid: int | None, badge: str | None = None, operator: str | None = None) -> dict[str, object]:
    """The operator as the audit trail names them: the peer's uid and user name, the
    badge if given, and the user a front end (the web console) says it acts for."""
    out: dict[str, object] = {"uid": uid, "user": None}
    if operator:
        out["operator"] = operator[:MAX_BADGE_CHARS]
    if uid is not None:
        try:
            out["user"] = pwd.getpwuid(uid).pw_name
        except KeyError:
            out["user"] = f"uid {uid}"  # a uid without a passwd entry is still named
    if badge:
        out["badge"] = badge
    return out
