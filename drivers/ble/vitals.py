"""Pure decoders for the streaming and spot-check vital-sign characteristics.

Heart Rate Measurement 0x2A37, PLX Spot-check 0x2A5E / Continuous 0x2A5F /
Features 0x2A60, Temperature Measurement 0x2A1C, Blood Pressure Measurement
0x2A35, Weight Measurement 0x2A9D and Battery Level 0x2A19 (fact sheet:
shared/protocols/ble-health.md). Bytes in, `Measurement` out, `BleDecodeError`
for a value that cannot be decoded. RFU flag bits are ignored; trailing bytes
after the last field the flags announce are ignored too (newer revisions append
fields), except where a field takes "the rest" (RR intervals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from drivers.ble.measurement import (
    DEVICE_SENSOR_STATUS,
    MEASUREMENT_STATUS,
    Measurement,
    Value,
    bit_flags,
    conditions_of,
)
from drivers.ble.numbers import BleDecodeError, Number, Reader

__all__ = [
    "PlxFeatures",
    "decode_battery",
    "decode_blood_pressure",
    "decode_heart_rate",
    "decode_plx_continuous",
    "decode_plx_features",
    "decode_plx_spot",
    "decode_temperature",
    "decode_weight",
]


def _value(label: str, number: Number, unit: str) -> Value:
    return Value(label, number.value, unit, frozenset({f"value_{number.special}"}) if number.special else frozenset())


def decode_heart_rate(data: bytes) -> Measurement:
    reader = Reader(data, "heart rate measurement")
    flags = reader.u8("flags")
    hr = reader.u16("heart rate") if flags & 0x01 else reader.u8("heart rate")
    marks: set[str] = set()
    if flags & 0x04 and not flags & 0x02:  # contact feature supported, contact not detected
        marks.add("sensor_off")
    values = [Value("HR", float(hr), "/min")]
    if flags & 0x08:
        values.append(Value("ENERGY", float(reader.u16("energy expended")), "kJ"))
    if flags & 0x10:
        if reader.remaining == 0 or reader.remaining % 2:
            raise BleDecodeError(f"heart rate measurement: RR intervals need pairs of bytes, have {reader.remaining}")
        while reader.remaining:
            # 1/1024 s -> ms, kept to the microsecond the unit resolves.
            values.append(Value("RR", round(reader.u16("RR interval") * 1000 / 1024, 3), "ms"))
    frozen = frozenset(marks)
    return Measurement("heart-rate", tuple(values), flags=frozen, conditions=frozen)


def _plx_status(reader: Reader, flags: int, status_bit: int, sensor_bit: int) -> tuple[frozenset[str], dict[str, int]]:
    marks: set[str] = set()
    extra: dict[str, int] = {}
    if flags & status_bit:
        word = reader.u16("measurement status")
        extra["measurement_status"] = word
        marks |= bit_flags(word, MEASUREMENT_STATUS)
    if flags & sensor_bit:
        word = reader.u24("device and sensor status")
        extra["device_sensor_status"] = word
        marks |= bit_flags(word, DEVICE_SENSOR_STATUS)
    return frozenset(marks), extra


def decode_plx_spot(data: bytes) -> Measurement:
    reader = Reader(data, "PLX spot-check measurement")
    flags = reader.u8("flags")
    values = [_value("SPO2", reader.sfloat("SpO2"), "%"), _value("PR", reader.sfloat("PR"), "/min")]
    time = reader.date_time("timestamp") if flags & 0x01 else None
    marks, extra = _plx_status(reader, flags, 0x02, 0x04)
    if flags & 0x08:
        values.append(_value("PAI", reader.sfloat("pulse amplitude index"), "%"))
    if flags & 0x10:  # device clock is not set: its timestamp means nothing
        time = None
        marks |= {"device_clock_not_set"}
    return Measurement("plx-spot", tuple(values), time, marks, conditions_of(marks), extra=extra)


def decode_plx_continuous(data: bytes) -> Measurement:
    reader = Reader(data, "PLX continuous measurement")
    flags = reader.u8("flags")
    values = [_value("SPO2", reader.sfloat("SpO2"), "%"), _value("PR", reader.sfloat("PR"), "/min")]
    if flags & 0x01:
        values += [
            _value("SPO2_FAST", reader.sfloat("SpO2 fast"), "%"),
            _value("PR_FAST", reader.sfloat("PR fast"), "/min"),
        ]
    if flags & 0x02:
        values += [
            _value("SPO2_SLOW", reader.sfloat("SpO2 slow"), "%"),
            _value("PR_SLOW", reader.sfloat("PR slow"), "/min"),
        ]
    marks, extra = _plx_status(reader, flags, 0x04, 0x08)
    if flags & 0x10:
        values.append(_value("PAI", reader.sfloat("pulse amplitude index"), "%"))
    return Measurement("plx-continuous", tuple(values), None, marks, conditions_of(marks), extra=extra)


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    supported: int
    measurement_status_support: int = 0
    device_sensor_status_support: int = 0


def decode_plx_features(data: bytes) -> PlxFeatures:
    reader = Reader(data, "PLX features")
    supported = reader.u16("supported features")
    status = reader.u16("measurement status support") if supported & 0x01 else 0
    sensor = reader.u24("device and sensor status support") if supported & 0x02 else 0
    return PlxFeatures(supported, status, sensor)


TEMPERATURE_SITES: Final = {
    1: "armpit",
    2: "body",
    3: "ear",
    4: "finger",
    5: "gi_tract",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum",
}


def decode_temperature(data: bytes) -> Measurement:
    reader = Reader(data, "temperature measurement")
    flags = reader.u8("flags")
    number = reader.float32("temperature")
    time = reader.date_time("time stamp") if flags & 0x02 else None
    marks: set[str] = set()
    if flags & 0x04:
        site = reader.u8("temperature type")
        marks.add(f"site_{TEMPERATURE_SITES.get(site, f'0x{site:02x}')}")
    value = _value("TEMP", number, "[degF]" if flags & 0x01 else "Cel")
    return Measurement("temperature", (value,), time, frozenset(marks))


BP_STATUS: Final = {0: "body_movement", 1: "cuff_too_loose", 2: "irregular_pulse", 5: "improper_position"}
_PULSE_RANGE: Final = {1: "pulse_rate_above_range", 2: "pulse_rate_below_range"}


def decode_blood_pressure(data: bytes) -> Measurement:
    reader = Reader(data, "blood pressure measurement")
    flags = reader.u8("flags")
    unit = "kPa" if flags & 0x01 else "mm[Hg]"
    values = [
        _value("NIBP_SYS", reader.sfloat("systolic"), unit),
        _value("NIBP_DIA", reader.sfloat("diastolic"), unit),
        _value("NIBP_MEAN", reader.sfloat("mean arterial pressure"), unit),
    ]
    time = reader.date_time("time stamp") if flags & 0x02 else None
    if flags & 0x04:
        values.append(_value("NIBP_PR", reader.sfloat("pulse rate"), "/min"))
    extra: dict[str, int] = {}
    if flags & 0x08:
        extra["user_id"] = reader.u8("user id")
    marks: frozenset[str] = frozenset()
    if flags & 0x10:
        word = reader.u16("measurement status")
        extra["measurement_status"] = word
        marks = bit_flags(word, BP_STATUS)
        pulse_range = _PULSE_RANGE.get(word >> 3 & 0x03)
        if pulse_range:
            marks |= {pulse_range}
    return Measurement("blood-pressure", tuple(values), time, marks, extra=extra)


WEIGHT_UNSUCCESSFUL: Final = 0xFFFF


def decode_weight(data: bytes) -> Measurement:
    reader = Reader(data, "weight measurement")
    flags = reader.u8("flags")
    imperial = bool(flags & 0x01)
    raw = reader.u16("weight")
    marks: frozenset[str] = frozenset({"measurement_unsuccessful"}) if raw == WEIGHT_UNSUCCESSFUL else frozenset()
    weight = None if marks else (round(raw * 0.01, 2) if imperial else round(raw * 0.005, 3))
    values = [Value("WEIGHT", weight, "[lb_av]" if imperial else "kg", marks)]
    time = reader.date_time("time stamp") if flags & 0x02 else None
    extra: dict[str, int] = {}
    if flags & 0x04:
        extra["user_id"] = reader.u8("user id")
    if flags & 0x08:
        bmi = reader.u16("BMI")
        height = reader.u16("height")
        values.append(Value("BMI", round(bmi * 0.1, 1), "kg/m2"))
        # Height: SI 0.001 m (reported in cm), imperial 0.1 in; both 0.1 of the unit used.
        values.append(Value("HEIGHT", round(height * 0.1, 1), "[in_i]" if imperial else "cm"))
    return Measurement("weight", tuple(values), time, extra=extra)


def decode_battery(data: bytes) -> Measurement:
    reader = Reader(data, "battery level")
    level = reader.u8("level")
    if level > 100:
        raise BleDecodeError(f"battery level: {level} % is not a percentage")
    return Measurement("battery", (Value("BATTERY", float(level), "%"),), extra={"battery_pct": level})
