"""The serial-port transport of the families that use one: `SerialLine`.

It holds the line settings a device model cannot change (a wrong one gives garbage
or silence, so the config refuses it at start-up) and builds the device's link:
pyserial on the event loop (transport.py) around the family's codec (link.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from drivers.family import CodecSettings, DeviceFamily, LinkEnv

if TYPE_CHECKING:
    from drivers.serial.link import SerialLink

__all__ = ["LineRule", "SerialLine"]

_KEYS: Final = frozenset(
    {"baud", "bytesize", "parity", "stopbits", "rtscts", "xonxoff", "exclusive", "stale_after_s", "reopen_min_s",
     "reopen_max_s"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LineRule:
    setting: str  # a DeviceConfig key
    allowed: tuple[object, ...]
    why: str  # the refusal, naming the device's fixed profile


@dataclass(frozen=True, slots=True)
class SerialLine:
    # protocol name -> the line settings its devices require
    rules: Mapping[str, tuple[LineRule, ...]] = field(default_factory=dict)
    kind: str = "serial"
    keys: frozenset[str] = _KEYS
    refusal: str = ""

    def claims(self, port: str) -> bool:
        return "://" not in port and not port.startswith("ble:")  # every path: the fallback transport

    def port_problem(self, port: str) -> str:
        return ""

    def port_identity(self, port: str) -> str:
        # A port opened twice under two names (`./m1`, `m1`, symlinks, `..`) crash-loops.
        return os.path.realpath(port)

    def device_problem(self, protocol: str, dev: Any) -> tuple[str, str] | None:
        for rule in self.rules.get(protocol, ()):
            if getattr(dev, rule.setting) not in rule.allowed:
                return rule.setting, rule.why
        return None

    def make_link(self, family: DeviceFamily, dev: Any, env: LinkEnv) -> SerialLink:
        from drivers.serial.link import LinkTiming, SerialLink
        from drivers.serial.transport import PortSettings

        port = PortSettings(
            port=dev.port, baud=dev.baud, bytesize=dev.bytesize, parity=dev.parity, stopbits=dev.stopbits,
            rtscts=dev.rtscts, xonxoff=dev.xonxoff, exclusive=dev.exclusive,
        )  # fmt: skip
        timing = LinkTiming(dev.stale_after_s, dev.reopen_min_s, dev.reopen_max_s)
        codec = family.codec(dev.protocol, dev.id, env.clock, CodecSettings(options=dev.options))
        return SerialLink(port, codec, env.emit, timing, env.opener)
