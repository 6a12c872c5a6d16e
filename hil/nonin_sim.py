"""Nonin format #2, #7, #8 and #13 encoders (the device side).

Byte layouts per shared/protocols/nonin.md. Used by the simulator, the demo and
as the encoder in codec round-trip tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from hil.scenarios import Vitals

__all__ = ["FORMATS", "SPOT_FORMAT", "nonin_packet", "nonin_spot_record"]

FORMATS: Final = (2, 7, 8)  # the streaming formats
SPOT_FORMAT: Final = 13  # event driven: one record per spot check (`nonin_spot_record`)


def _bcd(n: int) -> int:
    return (n // 10) << 4 | n % 10


def nonin_spot_record(
    vitals: Vitals, when: datetime, *, smartpoint: bool = True, from_memory: bool = False, low_battery: bool = False
) -> bytes:
    """One format #13 record (nonin.md §6) measured at `when` (the device's clock)."""
    hr, spo2 = _values(vitals)
    status = (0x0200 if smartpoint else 0) | (0x0100 if vitals.sensor_off else 0)
    status |= (0x0010 if from_memory else 0) | (0x0001 if low_battery else 0)
    stamp = [when.year // 100, when.year % 100, when.month, when.day, when.hour, when.minute, when.second, 0]
    data = bytes([*map(_bcd, stamp), status >> 8, status & 0xFF, (hr >> 8) & 0x01, hr & 0xFF, 0, spo2 & 0x7F])
    return b"\x00\x02\x00\x0d" + len(data).to_bytes(2, "big") + data + bytes([sum(data) & 0xFF, 0x03])


def _hr_bytes(hr: int) -> tuple[int, int]:
    return (hr >> 7) & 0x03, hr & 0x7F


def _values(vitals: Vitals) -> tuple[int, int]:
    if vitals.sensor_off:
        return 511, 127
    return int(vitals.pulse), int(vitals.spo2)


def nonin_packet(
    data_format: int, vitals: Vitals, low_battery: bool = False, pleth_phase: int = 0, *, computed: bool = True
) -> bytes:
    """One #8 packet (4 bytes) or one #2/#7 packet (25 frames of 5 bytes). `computed`
    False: the missing-data values of a device that has no reading yet (just powered
    on: nonin.md §7 "not yet computed"), with the sensor on (no SNSA)."""
    hr, spo2 = _values(vitals) if computed else (511, 127)
    if data_format == 8:
        status1 = 0x80 | (0x10 if vitals.low_perfusion else 0) | ((hr >> 7) & 0x03)
        status2 = (0x08 if vitals.sensor_off else 0) | (0x01 if low_battery else 0)
        return bytes([status1, hr & 0x7F, spo2 & 0x7F, status2])
    if data_format not in FORMATS:
        raise ValueError(f"unsupported Nonin format {data_format}")
    hr_msb, hr_lsb = _hr_bytes(hr)
    floats = [0] * 25
    floats[0], floats[1] = hr_msb, hr_lsb  # HR
    floats[2] = spo2  # SpO2
    floats[3] = 0x94  # SREV, as seen in a real capture
    floats[7] = 0x01 if low_battery else 0  # STAT2
    floats[8] = spo2  # SpO2-D
    floats[9] = floats[10] = spo2  # SpO2 fast, beat-to-beat
    floats[13], floats[14] = hr_msb, hr_lsb  # E-HR
    floats[15] = floats[16] = spo2  # E-SpO2, E-SpO2-D
    floats[19], floats[20] = hr_msb, hr_lsb  # HR-D
    floats[21], floats[22] = hr_msb, hr_lsb  # E-HR-D
    out = bytearray()
    for i, fl in enumerate(floats):
        status = 0x80 | (0x01 if i == 0 else 0)
        if vitals.sensor_off:
            status |= 0x08
        perfusion = 0x04 if vitals.low_perfusion else 0x02  # red or green pulse indicator
        if i % 12 < 3:
            status |= perfusion
        pleth = (pleth_phase + i * 10) % 256
        head = [0x01, status, pleth] if data_format == 2 else [status, pleth >> 1, pleth]
        frame = [*head, fl]
        out += bytes([*frame, sum(frame) & 0xFF])
    return bytes(out)
