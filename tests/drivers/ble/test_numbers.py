import contextlib
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.numbers import (
    BleDecodeError,
    Reader,
    encode_current_time,
    float32,
    parse_current_time,
    sfloat,
    sfloat_raw,
)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (0xF16E, 36.6),  # ble-health.md §1: 366 x 10^-1
        (0x0048, 72.0),
        (0x0061, 97.0),
        (0xB05F, 95e-5),  # glucose example: 95 x 10^-5 kg/L
        (0xC035, 53e-4),
        (0xD014, 20e-3),
        (0x0FFF, -1.0),  # mantissa sign extension
        (0x8001, 1e-8),  # exponent sign extension
        (0x7001, 1e7),
    ],
)
def test_sfloat_values(raw, value):
    assert sfloat(raw).value == value


@pytest.mark.parametrize(
    ("raw", "special"),
    [(0x07FF, "nan"), (0x0800, "nres"), (0x07FE, "+inf"), (0x0802, "-inf"), (0x0801, "reserved")],
)
def test_sfloat_specials_are_checked_before_sign_extension(raw, special):
    number = sfloat(raw)
    assert number.value is None
    assert number.special == special


def test_float32_values_and_specials():
    assert float32(0x04030201).value == 197121e4  # JavaBLEUtil TemperatureMeasurementTest 001
    assert float32(0xFF00016E).value == 36.6
    assert float32(0xFF0003D2).value == 97.8
    assert float32(0x00FFFFFF).value == -1.0
    for raw, special in [(0x007FFFFF, "nan"), (0x00800000, "nres"), (0x007FFFFE, "+inf"), (0x00800002, "-inf")]:
        assert float32(raw).special == special
        assert float32(raw).value is None


@given(st.integers(-2045, 2045), st.integers(-8, 7))
def test_sfloat_round_trip(mantissa, exponent):
    value = float(f"{mantissa}e{exponent}")
    assert sfloat(sfloat_raw(value, exponent)).value == value


def test_sfloat_raw_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        sfloat_raw(5000, 0)
    assert sfloat_raw(None) == 0x07FF


def test_date_time_unknown_parts_and_bad_dates():
    assert Reader(bytes.fromhex("E807030509 0F00".replace(" ", "")), "t").date_time("x") == datetime(2024, 3, 5, 9, 15)
    assert Reader(bytes.fromhex("2E0600000000 00".replace(" ", "")), "t").date_time("x") is None  # 1582, month unknown
    with pytest.raises(BleDecodeError, match="not a date"):
        Reader(bytes.fromhex("E8070D0509 0F00".replace(" ", "")), "t").date_time("x")  # month 13
    with pytest.raises(BleDecodeError, match="needs 2 bytes"):
        Reader(b"\x01", "t").u16("x")


def test_current_time_examples():
    assert parse_current_time(bytes(10)).time is None  # JavaBLEUtil CurrentTimeTest 001: all unknown
    ct = parse_current_time(bytes.fromhex("E80703050E1E2D028001"))
    assert ct.time == datetime(2024, 3, 5, 14, 30, 45, 500000)
    assert ct.day_of_week == 2
    assert ct.adjust_reason == 1
    written = encode_current_time(datetime(2024, 3, 5, 14, 30, 45, 500000), reason=1)
    assert written == bytes.fromhex("E80703050E1E2D028001")


@given(st.binary(max_size=12))
def test_reader_never_raises_anything_but_decode_errors(data):
    with contextlib.suppress(BleDecodeError):
        parse_current_time(data)
