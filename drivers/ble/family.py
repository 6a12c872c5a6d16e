"""The BLE health-profile family's descriptor and its transport, the radio (drivers/family.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

from appliance.core.settings import part, setting
from appliance.core.terms import Term
from appliance.core.tls import TlsPaths
from drivers.devices import DeviceSettings, LinkTiming, device_keys
from drivers.family import CodecSettings, DeviceFamily, DeviceTime, LinkEnv, cached_table
from drivers.terms import PERF, PULSE, SPO2

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from drivers.ble.link import BleLink
    from drivers.codec import Codec

__all__ = [
    "BLE_PROFILE_NAMES",
    "EPISODIC_PROFILES",
    "FAMILY",
    "BleDevice",
    "BleRadio",
    "BleTiming",
    "ble_address_problem",
]

# Profiles that connect to deliver a measurement taken earlier (drivers/ble/profiles.py
# `continuous=False`; a test keeps them equal): their device time is kept, flagged late.
EPISODIC_PROFILES: Final = frozenset({"plx-spot", "temperature", "blood-pressure", "glucose", "weight"})
# BLE health profiles (drivers/ble/profiles.py PROFILES keys; a test keeps them equal).
BLE_PROFILE_NAMES: Final = (
    "heart-rate",
    "plx-continuous",
    "plx-spot",
    "temperature",
    "blood-pressure",
    "glucose",
    "weight",
)
_ADDRESS: Final = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def ble_address_problem(port: str) -> str:
    """'' when `port` names a BLE device by address or 'any'; else why not."""
    target = port.removeprefix("ble:")
    if target == "any" or _ADDRESS.match(target):
        return ""
    return f"{target!r} is not a Bluetooth address (AA:BB:CC:DD:EE:FF) or 'any'"


@dataclass(frozen=True, slots=True)
class BleTiming:
    scan_timeout_s: float = setting(10.0, min=0.5, max=600.0)
    connect_timeout_s: float = setting(15.0, min=0.5, max=600.0)
    # A stored-records procedure must finish within this.
    records_timeout_s: float = setting(30.0, min=1.0, max=3600.0)
    # Battery level at or below which low_battery is raised.
    low_battery_pct: int = setting(20, min=0, max=100, only="only for BLE devices (protocol ble-<profile>)")
    # stale_after_s (continuous profiles only) and the reconnect backoff, reopen_min_s/reopen_max_s.
    link: LinkTiming = part(LinkTiming)


@dataclass(frozen=True, slots=True, kw_only=True)
class BleDevice(DeviceSettings):
    timing: BleTiming = part(BleTiming)  # its keys sit in the device's table


@dataclass(frozen=True, slots=True)
class BleRadio:
    """Port "ble:<address>", or "ble:any" = the first device advertising the profile's service."""

    kind: str = "radio"
    device: type[BleDevice] = BleDevice
    refusal: str = "BLE devices (protocol ble-<profile>) take port 'ble:<address>' or 'ble:any', and only they"

    @property
    def keys(self) -> frozenset[str]:
        return device_keys(self.device)

    def claims(self, port: str) -> bool:
        return port.startswith("ble:")

    def port_problem(self, port: str) -> str:
        return ble_address_problem(port)

    def takes_any(self, port: str) -> bool:
        return port == "ble:any"

    def port_identity(self, port: str) -> str:
        return port

    def device_problem(self, protocol: str, dev: BleDevice, uplink: TlsPaths) -> tuple[str, str] | None:
        return None

    def make_link(self, family: DeviceFamily, dev: BleDevice, env: LinkEnv) -> BleLink:
        from drivers.ble.link import BleLink
        from drivers.ble.profiles import PROFILES

        address = dev.port.removeprefix("ble:")
        return BleLink(
            dev.id,
            PROFILES[dev.protocol.removeprefix("ble-")],
            None if address == "any" else address,
            env.emit,
            timing=dev.timing,
            backend=env.radio(),
            cursor=env.cursor,
            device_tz=ZoneInfo(dev.timezone),
            now=env.clock.now,
        )


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> Codec:
    # Hex notification lines (`bedside decode`); in the gateway the radio link decodes.
    from drivers.ble.codec import HexLineCodec

    return HexLineCodec(device_id, protocol.removeprefix("ble-"))


def _table() -> dict[str, Term]:
    from drivers.ble.terms import ble_terms

    return ble_terms(Term, SPO2, PULSE, PERF)


_terms, _cached = cached_table(_table)

FAMILY: Final = DeviceFamily(
    name="ble",
    protocols=tuple(f"ble-{name}" for name in BLE_PROFILE_NAMES),
    codec=_codec,
    transports=(BleRadio(),),
    terms=_terms,
    table=_cached,
    # ble-health.md §4, §6-§8. Demonstration and test data are never a patient's values.
    invalid_flags=frozenset(
        {
            "sensor_off",
            "invalid_measurement",
            "unavailable",
            "demo_data",
            "test_data",
            "equipment_malfunction",
            "sensor_unconnected",
            "sensor_disconnected",
            "sensor_malfunctioning",
            "measurement_unsuccessful",
            "sensor_malfunction",
            "sample_size_insufficient",
            "strip_insertion_error",
            "strip_type_incorrect",
            "read_interrupted",
            "general_device_fault",
        }
    ),
    questionable_flags=frozenset(
        {
            "low_perfusion",
            "interference",
            "questionable_measurement",
            "early_estimate",
            "calibration_ongoing",
            "signal_processing_irregularity",
            "inadequate_signal",
            "poor_signal",
            "erratic_signal",
            "non_pulsatile_signal",
            "questionable_pulse",
            "sensor_displaced",
            "unknown_sensor",
            "body_movement",
            "cuff_too_loose",
            "improper_position",
            "temperature_too_high",
            "temperature_too_low",
            "time_fault",
            "over_range",
            "under_range",
        }
    ),
    simulator="hil.ble_bench:simulator",
    summary="BLE health profiles: one hex notification per line, optional '2A34:' prefix",
    device_time={f"ble-{name}": DeviceTime.EPISODIC for name in EPISODIC_PROFILES},
)
