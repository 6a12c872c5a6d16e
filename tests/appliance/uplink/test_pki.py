"""The bench and demo PKI verifies under OpenSSL's strict X.509 checks (what Python 3.13's
`ssl.create_default_context` turns on, and what third-party clients on it get): a TLS 1.3
handshake with the client certificate, over a socket pair, on this machine's Python."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from appliance.uplink.pki import issue, make_ca, write_key, write_pem


@pytest.mark.parametrize("strict", [True, False])
def test_a_chain_it_issues_passes_strict_verification_both_ways(tmp_path: Path, strict: bool) -> None:
    ca = make_ca("Bedside Test CA")
    ca_pem = write_pem(tmp_path / "ca.pem", ca.cert)
    server = issue(ca, "localhost", server=True, hosts=("localhost", "127.0.0.1"))
    client = issue(ca, "gw-1")
    for name, leaf in (("server", server), ("client", client)):
        write_pem(tmp_path / f"{name}.pem", leaf.cert)
        write_key(tmp_path / f"{name}.key", leaf.key)

    def context(purpose: ssl.Purpose, name: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(purpose, cafile=str(ca_pem))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(str(tmp_path / f"{name}.pem"), str(tmp_path / f"{name}.key"))
        if strict:  # 3.13 sets it in create_default_context; 3.11 does not: set it on both
            ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        else:
            ctx.verify_flags &= ~ssl.VERIFY_X509_STRICT
        return ctx

    server_ctx = context(ssl.Purpose.CLIENT_AUTH, "server")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = context(ssl.Purpose.SERVER_AUTH, "client")
    left, right = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(right, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(left, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1.3"
    thread.join(10)
    assert "error" not in seen, seen
    peer = seen["peer"]
    assert isinstance(peer, dict) and (("commonName", "gw-1"),) in peer["subject"]
