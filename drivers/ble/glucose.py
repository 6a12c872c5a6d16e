"""Glucose Measurement 0x2A18, Glucose Measurement Context 0x2A34 and the Record
Access Control Point 0x2A52 (ble-health.md §7).

Concentrations arrive in kg/L or mol/L; they are reported in the units a
clinician reads (mg/dL = kg/L x 10^5, mmol/L = mol/L x 10^3), exactly, from the
SFLOAT's decimal form. The label names the sample type, so capillary and venous
results never share a metric.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from drivers.ble.measurement import Measurement, Value, bit_flags
from drivers.ble.numbers import BleDecodeError, Reader, sfloat

__all__ = [
    "GlucoseContext",
    "RacpOp",
    "RacpResponse",
    "decode_glucose",
    "decode_glucose_context",
    "decode_racp",
    "racp_abort",
    "racp_report_after",
    "racp_report_all",
    "racp_report_count",
]

SAMPLE_TYPES: Final = {
    1: "CAP_WB",
    2: "CAP_PLASMA",
    3: "VEN_WB",
    4: "VEN_PLASMA",
    5: "ART_WB",
    6: "ART_PLASMA",
    7: "UNDET_WB",
    8: "UNDET_PLASMA",
    9: "ISF",
    10: "CONTROL",
}
SAMPLE_LOCATIONS: Final = {1: "finger", 2: "alternate_site", 3: "earlobe", 4: "control_solution"}
# Sensor Status Annunciation bits; which of them make the value questionable or
# invalid is the normalizer's table (appliance/normalize.py).
SENSOR_STATUS: Final = {
    0: "battery_low",
    1: "sensor_malfunction",
    2: "sample_size_insufficient",
    3: "strip_insertion_error",
    4: "strip_type_incorrect",
    5: "over_range",
    6: "under_range",
    7: "temperature_too_high",
    8: "temperature_too_low",
    9: "read_interrupted",
    10: "general_device_fault",
    11: "time_fault",
}


def _concentration(raw: int, molar: bool) -> tuple[float | None, str, frozenset[str]]:
    number = sfloat(raw)
    unit = "mmol/L" if molar else "mg/dL"
    if number.value is None:
        return None, unit, frozenset({f"value_{number.special}"})
    return number.scaled(3 if molar else 5), unit, frozenset()


def decode_glucose(data: bytes) -> Measurement:
    reader = Reader(data, "glucose measurement")
    flags = reader.u8("flags")
    seq = reader.u16("sequence number")
    base = reader.date_time("base time")
    time = base
    if flags & 0x01:
        offset_min = reader.s16("time offset")
        time = None if base is None else base + timedelta(minutes=offset_min)
    values: tuple[Value, ...] = ()
    marks: set[str] = set()
    if flags & 0x02:
        value, unit, special = _concentration(reader.u16("concentration"), bool(flags & 0x04))
        type_location = reader.u8("type-sample location")
        sample = SAMPLE_TYPES.get(type_location & 0x0F, "UNKNOWN")
        location = SAMPLE_LOCATIONS.get(type_location >> 4)
        if location:
            marks.add(f"site_{location}")
        values = (Value(f"GLU_{sample}", value, unit, special),)
    conditions: frozenset[str] = frozenset()
    extra: dict[str, int] = {}
    if flags & 0x08:
        word = reader.u16("sensor status annunciation")
        extra["sensor_status"] = word
        status = bit_flags(word, SENSOR_STATUS)
        marks |= status
        if "battery_low" in status:
            conditions = frozenset({"low_battery"})
    if flags & 0x10:
        marks.add("context_follows")
    return Measurement("glucose", values, time, frozenset(marks), conditions, seq=seq, extra=extra)


CARBOHYDRATES: Final = {1: "breakfast", 2: "lunch", 3: "dinner", 4: "snack", 5: "drink", 6: "supper", 7: "brunch"}
MEALS: Final = {1: "preprandial", 2: "postprandial", 3: "fasting", 4: "casual", 5: "bedtime"}
TESTERS: Final = {1: "self", 2: "hcp", 3: "lab"}
HEALTH: Final = {1: "minor_issues", 2: "major_issues", 3: "menses", 4: "stress", 5: "none"}
MEDICATIONS: Final = {1: "rapid", 2: "short", 3: "intermediate", 4: "long", 5: "premixed"}


@dataclass(frozen=True, slots=True)
class GlucoseContext:
    seq: int
    flags: frozenset[str]  # e.g. meal_preprandial, tester_hcp: joined onto the measurement's flags


def decode_glucose_context(data: bytes) -> GlucoseContext:
    reader = Reader(data, "glucose measurement context")
    flags = reader.u8("flags")
    seq = reader.u16("sequence number")
    marks: set[str] = set()
    if flags & 0x80:
        reader.u8("extended flags")
    if flags & 0x01:
        marks.add(f"carbohydrate_{CARBOHYDRATES.get(reader.u8('carbohydrate id'), 'other')}")
        reader.u16("carbohydrate")
    if flags & 0x02:
        marks.add(f"meal_{MEALS.get(reader.u8('meal'), 'other')}")
    if flags & 0x04:
        byte = reader.u8("tester-health")
        if byte & 0x0F in TESTERS:
            marks.add(f"tester_{TESTERS[byte & 0x0F]}")
        if byte >> 4 in HEALTH:
            marks.add(f"health_{HEALTH[byte >> 4]}")
    if flags & 0x08:
        reader.u16("exercise duration")
        reader.u8("exercise intensity")
        marks.add("exercise")
    if flags & 0x10:
        marks.add(f"medication_{MEDICATIONS.get(reader.u8('medication id'), 'other')}")
        reader.u16("medication")
    if flags & 0x40:
        reader.u16("HbA1c")
    return GlucoseContext(seq, frozenset(marks))


class RacpOp(enum.IntEnum):
    REPORT = 1
    DELETE = 2
    ABORT = 3
    REPORT_COUNT = 4
    COUNT_RESPONSE = 5
    RESPONSE = 6


class RacpOperator(enum.IntEnum):
    NULL = 0
    ALL = 1
    LESS_EQUAL = 2
    GREATER_EQUAL = 3
    WITHIN = 4
    FIRST = 5
    LAST = 6


FILTER_SEQUENCE: Final = 1
RACP_RESPONSES: Final = {
    1: "success",
    2: "op code not supported",
    3: "invalid operator",
    4: "operator not supported",
    5: "invalid operand",
    6: "no records found",
    7: "abort unsuccessful",
    8: "procedure not completed",
    9: "operand not supported",
}
SUCCESS: Final = 1
NO_RECORDS: Final = 6


def racp_report_all() -> bytes:
    return bytes([RacpOp.REPORT, RacpOperator.ALL])


def racp_report_after(seq: int) -> bytes:
    """Records with a sequence number >= seq + 1: those newer than the last one we hold."""
    return bytes([RacpOp.REPORT, RacpOperator.GREATER_EQUAL, FILTER_SEQUENCE]) + ((seq + 1) & 0xFFFF).to_bytes(
        2, "little"
    )


def racp_report_count() -> bytes:
    return bytes([RacpOp.REPORT_COUNT, RacpOperator.ALL])


def racp_abort() -> bytes:
    return bytes([RacpOp.ABORT, RacpOperator.NULL])


@dataclass(frozen=True, slots=True)
class RacpResponse:
    op: RacpOp
    request: int = 0  # op code answered (RESPONSE)
    code: int = 0  # response code (RESPONSE)
    count: int = 0  # number of stored records (COUNT_RESPONSE)

    @property
    def text(self) -> str:
        return RACP_RESPONSES.get(self.code, f"response code {self.code}")


def decode_racp(data: bytes) -> RacpResponse:
    reader = Reader(data, "record access control point")
    op = reader.u8("op code")
    reader.u8("operator")
    if op == RacpOp.COUNT_RESPONSE:
        return RacpResponse(RacpOp.COUNT_RESPONSE, count=reader.u16("number of records"))
    if op == RacpOp.RESPONSE:
        return RacpResponse(RacpOp.RESPONSE, request=reader.u8("request op code"), code=reader.u8("response code"))
    raise BleDecodeError(f"record access control point: op code {op} is not a response")
