"""RS-232 drivers: sans-IO codecs per device family plus the pyserial transport.

Codecs are imported when one is made: `CODECS` knows every name (from
drivers/protocols.py) but loads a family's module only for a protocol in use, so
the gateway's start-up and memory do not pay for families no device speaks.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

from drivers.protocols import PROTOCOLS

if TYPE_CHECKING:
    from drivers.codec import Codec

__all__ = ["CODECS", "make_codec"]

CodecFactory = Callable[[str], "Codec"]


def _factory(protocol: str) -> CodecFactory:
    """The factory for one protocol name, importing only its family's module."""
    if protocol.startswith("ble-"):
        ble: Mapping[str, CodecFactory] = importlib.import_module("drivers.ble.codec").BLE_CODECS
        return ble[protocol]
    if protocol == "nonin" or protocol.startswith("nonin-"):
        # `nonin` is format #8, the display-value stream most bedside integrations use.
        fmt = 8 if protocol == "nonin" else int(protocol.removeprefix("nonin-"))
        nonin = importlib.import_module("drivers.serial.nonin").NoninCodec
        return lambda device_id: nonin(device_id, fmt)
    module, cls = {
        "datex": ("drivers.serial.datex", "DatexCodec"),
        # MLLP over a serial port, or a TCP listener when the port is tcp:// or tls://
        "hl7": ("drivers.hl7.codec", "Hl7Codec"),
        "intellivue": ("drivers.serial.intellivue", "IntelliVueCodec"),
        "masimo": ("drivers.serial.masimo", "MasimoCodec"),
        "medibus": ("drivers.serial.medibus", "MedibusCodec"),
    }[protocol.split("-", 1)[0]]
    factory: CodecFactory = getattr(importlib.import_module(module), cls)
    return factory


class _Codecs(Mapping[str, CodecFactory]):
    """Protocol name -> codec factory; the factory's module is imported on lookup."""

    def __getitem__(self, protocol: str) -> CodecFactory:
        if protocol not in PROTOCOLS:
            raise KeyError(protocol)
        return _factory(protocol)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(PROTOCOLS))

    def __len__(self) -> int:
        return len(PROTOCOLS)

    def __contains__(self, protocol: object) -> bool:
        return protocol in PROTOCOLS


# Codec names as used by `bedside decode --protocol` and `protocol =` in config.
# BLE health profiles: hex notification lines for `decode`; in the gateway a
# `ble-<profile>` device gets a BLE link (drivers/ble/link.py), not a port.
CODECS: Final[Mapping[str, CodecFactory]] = _Codecs()


def make_codec(protocol: str, device_id: str, *, hl7_unframed: bool = False) -> Codec:
    """`hl7_unframed`: HL7 messages without MLLP framing (a `.hl7` file, or a serial
    port configured so); never guessed from the bytes (issue #14)."""
    if protocol == "hl7":
        from drivers.hl7.codec import Hl7Codec

        return Hl7Codec(device_id, unframed=hl7_unframed)
    try:
        factory = CODECS[protocol]
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(sorted(CODECS))}") from None
    return factory(device_id)
