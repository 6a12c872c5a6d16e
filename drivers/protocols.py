"""Protocol names and their per-model line settings, without importing any codec.

The config, the command line and the gateway need the names to validate and to
choose; the codecs themselves are imported only for a protocol a device uses
(drivers/serial/__init__.py), so a box without MEDIBUS or BLE devices never loads
those modules (start-up time and resident memory, issue #15).
"""

from __future__ import annotations

from typing import Final

__all__ = ["BLE_PROFILE_NAMES", "MEDIBUS_PROFILES", "PROTOCOLS"]

# Dräger model -> (baud, parity) the model's MEDIBUS port runs at (medibus.md §2).
MEDIBUS_PROFILES: Final[dict[str, tuple[int, str]]] = {
    "evita4": (19200, "E"),
    "evitaxl": (19200, "N"),
    "v500": (19200, "N"),
    "apollo": (9600, "E"),
}
# BLE health profiles (drivers/ble/profiles.py PROFILES keys; a test keeps them equal).
BLE_PROFILE_NAMES: Final = (
    "heart-rate", "plx-continuous", "plx-spot", "temperature", "blood-pressure", "glucose", "weight",
)  # fmt: skip

# Codec names as used by `bedside decode --protocol` and `protocol =` in config.
PROTOCOLS: Final = frozenset(
    {"datex", "hl7", "intellivue", "masimo", "medibus", "nonin", "nonin-2", "nonin-7", "nonin-8"}
    | {f"medibus-{model}" for model in MEDIBUS_PROFILES}
    | {f"ble-{name}" for name in BLE_PROFILE_NAMES}
)
