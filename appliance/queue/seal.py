"""Encryption at rest: every stored payload sealed with AES-256-GCM.

The key file is 32 random bytes, created with mode 0600 when absent. A missing
key for an existing store, a key file of the wrong size or permissions, or a
key that does not open the store's canary is a startup error, never a silent
fall-back to plaintext.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.core.errors import BedsideStoreError

__all__ = ["KEY_BYTES", "KeyError_", "Sealer", "load_or_create_key"]

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12


class KeyError_(BedsideStoreError):
    """The store key is missing, malformed, too open, or does not fit the store."""


def load_or_create_key(path: str | Path, create: bool) -> bytes:
    path = Path(path)
    if not path.exists():
        if not create:
            raise KeyError_(f"{path}: key file missing for an existing store")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, AESGCM.generate_key(bit_length=256))
        finally:
            os.close(fd)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyError_(f"{path}: key file mode {mode:04o} is readable by others; chmod 600")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise KeyError_(f"{path}: key file must hold {KEY_BYTES} bytes, found {len(key)}")
    return key


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, data: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, aad)

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise KeyError_("payload does not open with this key (wrong key or tampered data)") from exc
