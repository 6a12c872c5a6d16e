"""HTTPS with mutual TLS for the update client: TUF metadata and resumable bundle downloads.

TLS 1.3 only, the fleet server's CA pinned, host name checked, the box's own
certificate presented (the uplink's). Every read has a socket timeout and every
download a deadline, so a stalled server (slow retrieval) cannot hold the agent;
lengths are bounded by what the signed metadata says (endless data).
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from tuf.api import exceptions
from tuf.ngclient import FetcherInterface

from ota.errors import RefusedUpdate

__all__ = ["FetchLimits", "MtlsFetcher", "client_context", "transport_refusal"]

CHUNK_BYTES: Final = 64 * 1024
METADATA_CAP_BYTES: Final = 8 * 1024 * 1024  # above every UpdaterConfig *_max_length


def client_context(ca_path: str, cert_path: str, key_path: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(ca_path)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


@dataclass(frozen=True, slots=True)
class FetchLimits:
    read_timeout_s: float = 10.0  # no byte for this long: the server stalled
    metadata_deadline_s: float = 30.0
    bundle_deadline_s: float = 1800.0


class MtlsFetcher(FetcherInterface):
    def __init__(self, context: ssl.SSLContext, limits: FetchLimits = FetchLimits()) -> None:
        self._ctx = context
        self.limits = limits

    def _open(self, url: str, headers: dict[str, str]) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise exceptions.DownloadError(f"refusing non-HTTPS URL {url}")
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, context=self._ctx, timeout=self.limits.read_timeout_s
        )
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", path, headers={"User-Agent": "bedside-ota", **headers})
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def _fetch(self, url: str) -> Iterator[bytes]:
        # Metadata only (bundles go through download_resumable): read eagerly up to a
        # cap above ngclient's own limits, so the connection is closed here and never
        # left to a half-consumed generator; ngclient then enforces the exact limit.
        conn, resp = self._open(url, {})
        if resp.status != 200:
            resp.close()
            conn.close()
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {resp.status}", resp.status)
        body = bytearray()
        with contextlib.closing(
            self._chunks(conn, resp, time.monotonic() + self.limits.metadata_deadline_s, url)
        ) as it:
            for chunk in it:
                body += chunk
                if len(body) > METADATA_CAP_BYTES:
                    break
        return iter([bytes(body)])

    @staticmethod
    def _chunks(
        conn: http.client.HTTPSConnection, resp: http.client.HTTPResponse, deadline: float, url: str
    ) -> Generator[bytes, None, None]:
        try:
            while chunk := resp.read1(CHUNK_BYTES):
                if time.monotonic() > deadline:
                    raise exceptions.SlowRetrievalError(f"{url}: download deadline passed")
                yield chunk
        finally:
            resp.close()  # the response owns the socket once the server said it will close
            conn.close()

    def download_resumable(self, url: str, part: Path, length: int) -> None:
        """Bring `part` to exactly `length` bytes, continuing where an earlier try stopped."""
        have = part.stat().st_size if part.exists() else 0
        if have > length:
            part.unlink()
            have = 0
        if have == length:
            return
        deadline = time.monotonic() + self.limits.bundle_deadline_s
        try:
            conn, resp = self._open(url, {"Range": f"bytes={have}-"})
        except (OSError, http.client.HTTPException) as exc:
            raise transport_refusal(url, exc) from None
        try:
            if resp.status == 200:  # no range support: start again
                have = 0
                mode = "wb"
            elif resp.status == 206:
                mode = "ab"
            else:
                raise RefusedUpdate("http_error", f"{url}: HTTP {resp.status}")
            with part.open(mode) as f, contextlib.closing(self._chunks(conn, resp, deadline, url)) as chunks:
                for chunk in chunks:
                    have += len(chunk)
                    if have > length:
                        raise RefusedUpdate("oversized", f"{url}: more than the {length} bytes the metadata allows")
                    f.write(chunk)
        except exceptions.SlowRetrievalError as exc:
            raise RefusedUpdate("slow_retrieval", str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise transport_refusal(url, exc) from None
        finally:
            resp.close()
            conn.close()
        if have < length:
            raise RefusedUpdate("interrupted", f"{url}: {have} of {length} bytes; will resume")


def transport_refusal(url: str, exc: BaseException) -> RefusedUpdate:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RefusedUpdate("server_untrusted", f"{url}: {exc.verify_message}")
    if isinstance(exc, TimeoutError):
        return RefusedUpdate("slow_retrieval", f"{url}: no data for the read timeout")
    if isinstance(exc, ssl.SSLError):
        return RefusedUpdate("tls_refused", f"{url}: {exc.reason or exc}")
    return RefusedUpdate("unreachable", f"{url}: {exc}")
