"""Where an HL7 device's port names a TCP listener: `tcp://host:port` or `tls://host:port`.

Apart from the listener so the config can tell a listener from a serial path
without importing the listener, its codec and the TLS stack (issue #15: start-up
cost only for what the config uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ListenAddress", "parse_listen"]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    tls: bool
    host: str
    port: int


def parse_listen(text: str) -> ListenAddress | None:
    """`tcp://host:port` / `tls://host:port` -> address; None for a serial path.

    The scheme is case-insensitive (`TCP://` is a listener, not a serial path that
    would be retried forever), and any other `scheme://` is refused."""
    scheme, sep, _ = text.partition("://")
    if not sep or "/" in scheme:
        return None
    if scheme.lower() not in ("tcp", "tls"):
        raise ValueError(f"{text!r}: a network port is tcp://HOST:PORT or tls://HOST:PORT, not {scheme}://")
    parts = urlsplit(text)
    if parts.hostname is None or parts.port is None or parts.path not in ("", "/"):
        raise ValueError(f"{text!r}: expected tcp://HOST:PORT or tls://HOST:PORT")
    return ListenAddress(parts.scheme == "tls", parts.hostname, parts.port)
