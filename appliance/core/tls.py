"""The one rule for TLS files a section may leave to the uplink's: `resolve_tls`.

A tls:// listener's CA, and the OTA client's CA, certificate and key, are the
section's own when set, else the uplink's. Config checks, start-up checks, the
listener and the OTA agent all ask `resolve_tls`; none spells the fallback itself.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = ["ROLES", "ResolvedTls", "TlsFile", "TlsPaths", "resolve_tls"]

ROLES: Final = ("ca", "cert", "key")


class TlsPaths(Protocol):
    """The uplink's mutual-TLS files (its config section): the fallback."""

    @property
    def ca_path(self) -> str: ...

    @property
    def cert_path(self) -> str: ...

    @property
    def key_path(self) -> str: ...


@dataclass(frozen=True, slots=True)
class TlsFile:
    key: str  # the config key the path comes from ("devices[2].tls_cert_path", "uplink.ca_path")
    path: str  # '' = set nowhere


@dataclass(frozen=True, slots=True)
class ResolvedTls:
    ca: TlsFile
    cert: TlsFile
    key: TlsFile

    @property
    def files(self) -> tuple[TlsFile, TlsFile, TlsFile]:
        return self.ca, self.cert, self.key


def resolve_tls(
    where: str, own: tuple[str, str, str], uplink: TlsPaths, *, prefix: str = "", fallback: Collection[str] = ROLES
) -> ResolvedTls:
    """CA, certificate and key of a TLS user whose keys are `{where}.{prefix}ca_path` ...
    `own`: its paths ('' = not set). A role in `fallback` left unset takes the uplink's;
    set nowhere, the path is '' and its key the user's own (where to set it)."""
    theirs = (uplink.ca_path, uplink.cert_path, uplink.key_path)
    files = [
        TlsFile(f"uplink.{role}_path", other)
        if not mine and other and role in fallback
        else TlsFile(f"{where}.{prefix}{role}_path".lstrip("."), mine)
        for role, mine, other in zip(ROLES, own, theirs, strict=True)
    ]
    return ResolvedTls(*files)
