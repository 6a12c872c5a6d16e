"""The serial-port transport of the families that use one: `SerialLine`.

A serial device (`SerialDevice`) is its port's line settings (`PortSettings`, each
key's default and limits written once, here) and its link's timing (LinkTiming). The
transport holds the line settings a device model cannot change (a wrong one gives
garbage or silence, so the config refuses it at start-up) and builds the device's
link: pyserial on the event loop (transport.py) around the family's codec (link.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from appliance.core.settings import part, setting
from appliance.core.tls import TlsPaths
from drivers.devices import DeviceSettings, LinkTiming, device_keys
from drivers.family import CodecSettings, DeviceFamily, LinkEnv

if TYPE_CHECKING:
    from drivers.serial.link import SerialLink

__all__ = ["BAUD_RATES", "LineRule", "PortSettings", "SerialDevice", "SerialLine"]

BAUD_RATES: Final = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)


@dataclass(frozen=True, slots=True)
class PortSettings:
    port: str = setting(min_len=1)
    baud: int = setting(9600, choices=BAUD_RATES)
    bytesize: int = setting(8, choices=(5, 6, 7, 8))
    parity: str = setting("N", choices=("N", "E", "O", "M", "S"))
    stopbits: float = setting(1.0, choices=(1.0, 1.5, 2.0))
    rtscts: bool = setting(False)
    xonxoff: bool = setting(False)
    exclusive: bool = setting(True)


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialDevice(DeviceSettings):
    line: PortSettings = part()  # its keys sit in the device's table (baud = ..., parity = ...)
    timing: LinkTiming = part(LinkTiming)


@dataclass(frozen=True, slots=True)
class LineRule:
    setting: str  # a PortSettings key
    allowed: tuple[object, ...]
    why: str  # the refusal, naming the device's fixed profile


@dataclass(frozen=True, slots=True)
class SerialLine:
    # protocol name -> the line settings its devices require
    rules: Mapping[str, tuple[LineRule, ...]] = field(default_factory=dict)
    kind: str = "serial"
    device: type[SerialDevice] = SerialDevice
    refusal: str = ""

    @property
    def keys(self) -> frozenset[str]:
        return device_keys(self.device)

    def claims(self, port: str) -> bool:
        return "://" not in port and not port.startswith("ble:")  # every path: the fallback transport

    def port_problem(self, port: str) -> str:
        return ""

    def takes_any(self, port: str) -> bool:
        return False

    def port_identity(self, port: str) -> str:
        # A port opened twice under two names (`./m1`, `m1`, symlinks, `..`) crash-loops.
        return os.path.realpath(port)

    def device_problem(self, protocol: str, dev: SerialDevice, uplink: TlsPaths) -> tuple[str, str] | None:
        for rule in self.rules.get(protocol, ()):
            if getattr(dev.line, rule.setting) not in rule.allowed:
                return rule.setting, rule.why
        return None

    def make_link(self, family: DeviceFamily, dev: SerialDevice, env: LinkEnv) -> SerialLink:
        from drivers.serial.link import SerialLink

        codec = family.codec(dev.protocol, dev.id, env.clock, CodecSettings(options=dev.options))
        return SerialLink(dev.line, codec, env.emit, dev.timing, env.opener)
