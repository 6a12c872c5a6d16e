"""IEEE 11073-20601 SFLOAT/FLOAT and the Bluetooth date-time fields (ble-health.md §1, §9).

Special values are checked on the raw word before sign extension. The decimal
value is kept exact as (mantissa, exponent) and turned into the nearest float
from its decimal text, so 0xF16E is 36.6, not 36.599999999999994.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from appliance.core.errors import BedsideInputError

__all__ = [
    "BleDecodeError",
    "CurrentTime",
    "Number",
    "Reader",
    "encode_current_time",
    "float32",
    "parse_current_time",
    "sfloat",
    "sfloat_raw",
]


class BleDecodeError(BedsideInputError, ValueError):
    """A characteristic value that cannot be decoded (too short, inconsistent flags)."""


@dataclass(frozen=True, slots=True)
class Number:
    """A decoded 11073 number: `value` None with `special` set for NaN, NRes, +-INF, reserved."""

    value: float | None
    special: str = ""
    mantissa: int = 0
    exponent: int = 0

    def scaled(self, power: int) -> float | None:
        """The value times 10**power, exact in decimal (unit changes such as kg/L -> mg/dL)."""
        return None if self.value is None else _exact(self.mantissa, self.exponent + power)


_SFLOAT_SPECIAL: Final = {0x07FF: "nan", 0x0800: "nres", 0x07FE: "+inf", 0x0802: "-inf", 0x0801: "reserved"}
_FLOAT_SPECIAL: Final = {
    0x007FFFFF: "nan",
    0x00800000: "nres",
    0x007FFFFE: "+inf",
    0x00800002: "-inf",
    0x00800001: "reserved",
}


def _exact(mantissa: int, exponent: int) -> float:
    return float(f"{mantissa}e{exponent}")


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _number(raw: int, specials: dict[int, str], mantissa_bits: int, exponent_bits: int) -> Number:
    special = specials.get(raw)
    if special is not None:  # checked on the raw word, before sign extension
        return Number(None, special)
    exponent = _signed(raw >> mantissa_bits, exponent_bits)
    mantissa = _signed(raw & ((1 << mantissa_bits) - 1), mantissa_bits)
    return Number(_exact(mantissa, exponent), "", mantissa, exponent)


def sfloat(raw: int) -> Number:
    return _number(raw, _SFLOAT_SPECIAL, 12, 4)


def sfloat_raw(value: float | None, exponent: int = 0) -> int:
    """The SFLOAT word for `value` at a fixed exponent (simulators); None -> NaN."""
    if value is None:
        return 0x07FF
    mantissa = round(value / 10.0**exponent)
    if not -2045 <= mantissa <= 2045 or not -8 <= exponent <= 7:
        raise ValueError(f"{value} does not fit an SFLOAT at exponent {exponent}")
    return ((exponent & 0xF) << 12) | (mantissa & 0x0FFF)


def float32(raw: int) -> Number:
    return _number(raw, _FLOAT_SPECIAL, 24, 8)


class Reader:
    """Little-endian field reader over one characteristic value; short data -> BleDecodeError."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._what = what

    def _take(self, size: int, field: str) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise BleDecodeError(
                f"{self._what}: {field} needs {size} bytes at offset {self._pos}, have {len(self._data) - self._pos}"
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self, field: str) -> int:
        return self._take(1, field)[0]

    def u16(self, field: str) -> int:
        return int.from_bytes(self._take(2, field), "little")

    def s16(self, field: str) -> int:
        return int.from_bytes(self._take(2, field), "little", signed=True)

    def u24(self, field: str) -> int:
        return int.from_bytes(self._take(3, field), "little")

    def sfloat(self, field: str) -> Number:
        return sfloat(self.u16(field))

    def float32(self, field: str) -> Number:
        return float32(int.from_bytes(self._take(4, field), "little"))

    def date_time(self, field: str) -> datetime | None:
        """Date Time (7 bytes), device local time; None when any part is 'unknown' (0)."""
        year, month, day = self.u16(field), self.u8(field), self.u8(field)
        hour, minute, second = self.u8(field), self.u8(field), self.u8(field)
        if year == 0 or month == 0 or day == 0:
            return None
        try:
            return datetime(year, month, day, hour, minute, second)
        except ValueError:
            raise BleDecodeError(
                f"{self._what}: {field} is not a date: {year}-{month}-{day} {hour}:{minute}:{second}"
            ) from None

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """Current Time 0x2A2B: device local time, day of week (1 Mon..7 Sun, 0 unknown), adjust reason bits."""

    time: datetime | None
    day_of_week: int
    adjust_reason: int


def parse_current_time(data: bytes) -> CurrentTime:
    reader = Reader(data, "current time")
    time = reader.date_time("date time")
    day_of_week = reader.u8("day of week")
    fractions256 = reader.u8("fractions256")
    reason = reader.u8("adjust reason")
    if time is not None:
        time = time.replace(microsecond=fractions256 * 1_000_000 // 256)
    return CurrentTime(time, day_of_week, reason)


MANUAL_UPDATE: Final = 0x01
EXTERNAL_REFERENCE: Final = 0x02


def encode_current_time(local: datetime, reason: int = EXTERNAL_REFERENCE) -> bytes:
    """The value the gateway writes to set a device's clock from its own (NTP) time."""
    return (
        local.year.to_bytes(2, "little")
        + bytes([local.month, local.day, local.hour, local.minute, local.second])
        + bytes([local.isoweekday(), local.microsecond * 256 // 1_000_000, reason])
    )
