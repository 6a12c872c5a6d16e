"""IntelliVue value types: FLOAT-Type numbers and BCD AbsoluteTime (Data Export
Interface Programming Guide), both ways (the simulator encodes what the codec decodes)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

__all__ = ["FLOAT_SPECIALS", "decode_abs_time", "decode_float", "encode_abs_time", "encode_float"]

FLOAT_SPECIALS: Final[dict[int, str]] = {
    0x7FFFFF: "nan",
    0x800000: "nres",
    0x7FFFFE: "+inf",
    0x800002: "-inf",
    0x800001: "reserved",
}


def decode_float(raw: int) -> tuple[float | None, str | None]:
    """FLOAT-Type: int8 exponent, int24 mantissa. Special values -> (None, name).

    Specials are recognised by the mantissa alone (as brarm does): they only ever
    appear with exponent 0, and a real value cannot use those extreme mantissas.
    """
    mantissa = raw & 0xFFFFFF
    special = FLOAT_SPECIALS.get(mantissa)
    if special is not None:
        return None, special
    if mantissa & 0x800000:
        mantissa -= 0x1000000
    exponent = (raw >> 24) & 0xFF
    if exponent & 0x80:
        exponent -= 0x100
    value = mantissa * 10.0**exponent
    return (round(value, -exponent) if exponent < 0 else value), None


def encode_float(value: float, decimals: int = 1) -> int:
    mantissa = round(value * 10.0**decimals)
    if not -0x7FFFFD <= mantissa <= 0x7FFFFD:
        raise ValueError(f"{value} does not fit a FLOAT-Type with {decimals} decimals")
    return ((-decimals) & 0xFF) << 24 | (mantissa & 0xFFFFFF)


def _bcd(byte: int) -> int | None:
    hi, lo = byte >> 4, byte & 0x0F
    return None if hi > 9 or lo > 9 else hi * 10 + lo


def decode_abs_time(raw: bytes) -> datetime | None:
    """AbsoluteTime (8 BCD bytes); unset (0xFF) or impossible dates -> None."""
    if len(raw) != 8:
        return None
    parts = [_bcd(b) for b in raw[:7]]
    if any(p is None for p in parts):
        return None
    century, year, month, day, hour, minute, second = (p or 0 for p in parts)
    fraction = _bcd(raw[7]) or 0
    try:
        return datetime(century * 100 + year, month, day, hour, minute, second, fraction * 10_000)
    except ValueError:
        return None


def encode_abs_time(when: datetime) -> bytes:
    parts = (when.year // 100, when.year % 100, when.month, when.day, when.hour, when.minute, when.second)
    return bytes((p // 10) << 4 | p % 10 for p in (*parts, when.microsecond // 10_000))
