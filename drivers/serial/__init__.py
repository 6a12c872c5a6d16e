"""RS-232 drivers: sans-IO codecs per device family plus the pyserial transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from drivers.ble.codec import BLE_CODECS
from drivers.codec import Codec
from drivers.hl7.codec import Hl7Codec
from drivers.serial.datex import DatexCodec
from drivers.serial.intellivue import IntelliVueCodec
from drivers.serial.masimo import MasimoCodec
from drivers.serial.medibus import PROFILES as MEDIBUS_PROFILES
from drivers.serial.medibus import MedibusCodec
from drivers.serial.nonin import NoninCodec

__all__ = ["CODECS", "make_codec"]

CodecFactory = Callable[[str], Codec]

# Codec names as used by `bedside decode --protocol` and `protocol =` in config.
# `nonin` is format #8, the display-value stream most bedside integrations use.
CODECS: Final[dict[str, CodecFactory]] = {
    "datex": DatexCodec,
    "hl7": Hl7Codec,  # MLLP over a serial port, or a TCP listener when the port is tcp:// or tls://
    "intellivue": IntelliVueCodec,
    "masimo": MasimoCodec,
    "medibus": MedibusCodec,
    **{f"medibus-{model}": MedibusCodec for model in MEDIBUS_PROFILES},
    "nonin": lambda device_id: NoninCodec(device_id, 8),
    "nonin-2": lambda device_id: NoninCodec(device_id, 2),
    "nonin-7": lambda device_id: NoninCodec(device_id, 7),
    "nonin-8": lambda device_id: NoninCodec(device_id, 8),
    # BLE health profiles: hex notification lines for `decode`; in the gateway a
    # `ble-<profile>` device gets a BLE link (drivers/ble/link.py), not a port.
    **BLE_CODECS,
}


def make_codec(protocol: str, device_id: str, *, hl7_unframed: bool = False) -> Codec:
    """`hl7_unframed`: HL7 messages without MLLP framing (a `.hl7` file, or a serial
    port configured so); never guessed from the bytes (issue #14)."""
    if protocol == "hl7":
        return Hl7Codec(device_id, unframed=hl7_unframed)
    try:
        factory = CODECS[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(sorted(CODECS))}") from None
    return factory(device_id)
