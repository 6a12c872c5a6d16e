"""What a decoded characteristic value is, before it becomes `Reading`s.

`Measurement.values` carry device-native labels and units (family `ble` in the
term table); `flags` apply to every value of the measurement (status bits);
`conditions` are device conditions the link turns into edge-triggered technical
events (sensor off, low battery).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

__all__ = ["DEVICE_SENSOR_STATUS", "MEASUREMENT_STATUS", "Measurement", "Value", "bit_flags"]


@dataclass(frozen=True, slots=True)
class Value:
    label: str
    value: float | None
    unit: str
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Measurement:
    characteristic: str
    values: tuple[Value, ...]
    device_time: datetime | None = None  # device local time, no zone
    flags: frozenset[str] = frozenset()
    conditions: frozenset[str] = frozenset()
    seq: int | None = None  # stored-record sequence number (glucose)
    extra: dict[str, int] = field(default_factory=dict)  # e.g. battery percent, user id


def bit_flags(word: int, table: dict[int, str]) -> frozenset[str]:
    return frozenset(name for bit, name in table.items() if word >> bit & 1)


# PLX Measurement Status (ble-health.md §4). Demonstration and test data are never
# patient data: both map to flags the normalizer treats as invalid.
MEASUREMENT_STATUS: Final = {
    5: "measurement_ongoing",
    6: "early_estimate",
    7: "validated",
    8: "fully_qualified",
    9: "from_storage",
    10: "demo_data",
    11: "test_data",
    12: "calibration_ongoing",
    13: "unavailable",
    14: "questionable_measurement",
    15: "invalid_measurement",
}
# PLX Device and Sensor Status (ble-health.md §4).
DEVICE_SENSOR_STATUS: Final = {
    0: "extended_display_update",
    1: "equipment_malfunction",
    2: "signal_processing_irregularity",
    3: "inadequate_signal",
    4: "poor_signal",
    5: "low_perfusion",
    6: "erratic_signal",
    7: "non_pulsatile_signal",
    8: "questionable_pulse",
    9: "signal_analysis_ongoing",
    10: "interference",
    11: "sensor_unconnected",
    12: "unknown_sensor",
    13: "sensor_displaced",
    14: "sensor_malfunctioning",
    15: "sensor_disconnected",
}
# Status bits that mean the sensor is not on the patient: a technical condition too.
SENSOR_OFF_BITS: Final = frozenset({"sensor_unconnected", "sensor_disconnected"})


def conditions_of(flags: Iterable[str]) -> frozenset[str]:
    flags = frozenset(flags)
    return frozenset({"sensor_off"}) if flags & SENSOR_OFF_BITS else frozenset()
