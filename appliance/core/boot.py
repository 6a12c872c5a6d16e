"""The boot id: which start of the gateway process a record or a publish comes from.

Random, not a persisted counter: nothing has to be written before the first
reading, a restored or cloned data partition cannot repeat one, and 64 bits make
two starts sharing one as good as impossible. It is on every uplink envelope (a
consumer tells a restart from a gap in `seq`) and in the key of every observation
id without a source identity (appliance/normalize.py). Not a secret.
"""

from __future__ import annotations

import secrets
from typing import Final

__all__ = ["BOOT_ID_BYTES", "new_boot_id"]

BOOT_ID_BYTES: Final = 8  # 16 hex characters


def new_boot_id() -> str:
    return secrets.token_hex(BOOT_ID_BYTES)
