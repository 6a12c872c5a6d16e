"""What every configured device is made of, whatever its transport.

`DeviceSettings` holds the keys every device takes; each transport subclasses it
with only its own keys (drivers/serial/line.py `SerialDevice`, drivers/ble/family.py
`BleDevice`, drivers/hl7/family.py `ListenerDevice`), so a key that does not apply
to a device's transport is refused when the config is read. `LinkTiming` is the
stale bound and reopen backoff every link that opens something shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from appliance.core.settings import internal, setting, table_fields
from appliance.core.tls import ResolvedTls, TlsPaths

__all__ = ["COMMON_KEYS", "DeviceSettings", "LinkTiming", "device_keys"]


def _protocols() -> tuple[str, ...]:
    from drivers.registry import protocols  # called: the registry may grow (tests)

    return protocols()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSettings:
    id: str = setting(min_len=1, max_len=64)
    protocol: str = setting(choices=_protocols)
    port: str = setting(min_len=1)
    timezone: str = setting("UTC", min_len=1)
    # Overrides gateway.bed_id for this device until the registry pairs it.
    bed_id: str = setting("")
    # The family's own keys on this transport (DeviceFamily.options), checked like the rest.
    options: Mapping[str, Any] = internal(dict)

    def tls(self, where: str, uplink: TlsPaths) -> ResolvedTls | None:
        """The TLS files this device serves with (None: it serves none); keys under `where`."""
        return None


@dataclass(frozen=True, slots=True)
class LinkTiming:
    stale_after_s: float = setting(5.0, min=0.1, max=3600.0)
    reopen_min_s: float = setting(0.2, min=0.01, max=60.0)
    reopen_max_s: float = setting(10.0, min=0.1, max=600.0, not_below="reopen_min_s")


COMMON_KEYS = frozenset(table_fields(DeviceSettings))


def device_keys(cls: type[DeviceSettings]) -> frozenset[str]:
    """The keys a device type takes beyond those every device takes."""
    return frozenset(table_fields(cls)) - COMMON_KEYS
