"""The uplink's TLS policy: TLS 1.3 only, client certificate, pinned CA,
hostname verification. Fail closed: `preflight()` refuses missing, unreadable,
expired, not-yet-valid or foreign certificates and keys readable by others with
one line naming the file, before any connection is tried. There is no code path
to a plaintext or unverified connection.
"""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

__all__ = ["TlsFiles", "UplinkTlsError", "check_key_file", "client_context", "preflight"]


class UplinkTlsError(Exception):
    """The uplink's TLS material is unusable; the uplink stays off (one-line message)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: str
    cert: str
    key: str


def _load_cert(path: str, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise UplinkTlsError(f"{path}: {what} missing") from None
    except (OSError, ValueError) as exc:
        raise UplinkTlsError(f"{path}: {what} unreadable: {exc}") from None


def check_key_file(path: str, what: str = "client key") -> None:
    """A private key must exist and be readable by its owner only (mode 0600 or
    stricter); a device listener applies the same rule to its key."""
    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
    except FileNotFoundError:
        raise UplinkTlsError(f"{path}: {what} missing") from None
    except OSError as exc:
        raise UplinkTlsError(f"{path}: {what} unreadable: {exc.strerror}") from None
    if mode & 0o077:
        raise UplinkTlsError(f"{path}: {what} mode {mode:04o} is readable by others; chmod 600")


def preflight(files: TlsFiles, now: dt.datetime | None = None) -> x509.Certificate:
    """Check the material; returns the client certificate (its CN is our identity)."""
    now = now or dt.datetime.now(dt.UTC)
    ca = _load_cert(files.ca, "CA certificate")
    cert = _load_cert(files.cert, "client certificate")
    check_key_file(files.key)
    if now < cert.not_valid_before_utc:
        raise UplinkTlsError(f"{files.cert}: client certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    if now > cert.not_valid_after_utc:
        raise UplinkTlsError(f"{files.cert}: client certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise UplinkTlsError(f"{files.cert}: client certificate is not issued by the pinned CA {files.ca}") from None
    return cert


def client_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server and its host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_verify_locations(cafile=files.ca)  # pinned: only our CA, no system store
        ctx.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise UplinkTlsError(f"cannot load TLS material: {exc}") from None
    return ctx
