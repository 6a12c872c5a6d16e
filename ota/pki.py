"""The RAUC bundle-signing PKI: a CA (its certificate is the box's RAUC keyring)
and a signing leaf, EC P-256, keys 0600.

The leaf carries digitalSignature and no extended key usage, which is what RAUC's
default purpose check (OpenSSL "smimesign"/any) accepts. This module is separate
from the uplink's PKI on purpose: different trust (who may change the box's
software vs who may talk to the broker), different extensions, and ota/ does not
import the uplink.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["make_signing_pki", "provision_box"]


def _cert(
    subject: str,
    issuer: x509.Name | None,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    usage = (
        x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        if ca
        else x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650 if ca else 825))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
        .sign(signer, hashes.SHA256())
    )


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_signing_pki(directory: Path, name: str) -> None:
    """Write ca.pem, ca.key, signing.pem, signing.key under `directory`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(f"{name} RAUC CA", None, ca_key, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(f"{name} RAUC signing", ca.subject, leaf_key, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    _write(directory / "ca.pem", ca.public_bytes(pem), private=False)
    _write(directory / "ca.key", ca_key.private_bytes(pem, pkcs8, none), private=True)
    _write(directory / "signing.pem", leaf.public_bytes(pem), private=False)
    _write(directory / "signing.key", leaf_key.private_bytes(pem, pkcs8, none), private=True)


def provision_box(directory: Path, common_name: str) -> bool:
    """First boot: the box's own key (0600) and a CSR for the fleet CA; False if one exists.

    Made on the box, on its data partition; the image never carries a private key.
    """
    key_path = directory / "box.key"
    if key_path.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(key_path, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), True)
    _write(directory / "box.csr", csr.public_bytes(pem), private=False)
    return True
