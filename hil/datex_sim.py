"""A GE Datex-Ohmeda S/5 monitor's end of the computer interface (the device side).

Sans-IO like the IntelliVue simulator: host bytes in (`feed`), and `poll(t)` gives
the records due at time t. A displayed-values request (tx_ival >= 5 s) starts a
transmission every tx_ival seconds; tx_ival 0 stops it; -1 sends once. Values come
from a vitals scenario; groups not simulated carry status 0 (module absent).
Records are little-endian, framed with 0x7E and the escaped 8-bit checksum.

Layout: shared/protocols/datex-s5.md §2-§5.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from drivers.datex.frame import DatexFrameDecoder, build_record, encode_frame, parse_record
from hil.scenarios import Vitals

__all__ = ["S5Sim", "phdb_subrecord"]

INVALID: Final = -32767
PRESENT_ACTIVE: Final = 0x03


def _unix(when: datetime) -> int:
    """The monitor counts its local wall clock as if it were UTC seconds since 1970."""
    return int(when.replace(tzinfo=UTC).timestamp())


def _put(buf: bytearray, offset: int, value: float | None, factor: float) -> None:
    raw = INVALID if value is None else round(value / factor)
    struct.pack_into("<h", buf, offset, raw)


def _group(buf: bytearray, offset: int, label: int = 0, status: int = PRESENT_ACTIVE) -> None:
    struct.pack_into("<IH", buf, offset, status, label)


def phdb_subrecord(v: Vitals, when: datetime, t: float = 0.0) -> bytes:
    """One BASIC-class displayed-values subrecord (278 bytes) for these vitals."""
    buf = bytearray(278)
    struct.pack_into("<I", buf, 0, _unix(when))
    hr = None if v.sensor_off else v.pulse
    _group(buf, 4, label=0x0123, status=PRESENT_ACTIVE | (1 << 3))  # leads I, II, III; HR source ECG
    for off, value, factor in ((10, v.pulse, 1), (12, -0.5, 0.01), (14, 1.2, 0.01), (16, 0.3, 0.01), (18, 16, 1)):
        _put(buf, off, value, factor)
    _group(buf, 20, label=1)  # P1 = ART
    for off, value, factor in ((26, 122.0 + (v.pulse - 72) / 3, 0.01), (28, 74.0, 0.01), (30, 90.0, 0.01)):
        _put(buf, off, value, factor)
    _put(buf, 32, v.pulse, 1)
    _group(buf, 34, label=2)  # P2 = CVP
    for off, value in ((40, 9.0), (42, 4.0), (44, 6.0)):
        _put(buf, off, value, 0.01)
    _put(buf, 46, None, 1)
    _group(buf, 76, label=1 << 3)  # NIBP in AUTO mode
    for off, value in ((82, 118.0), (84, 76.0), (86, 90.0)):
        _put(buf, off, value, 0.01)
    _put(buf, 88, v.pulse, 1)
    _group(buf, 90, label=1)  # T1 = ESO
    _put(buf, 96, 37.1, 0.01)
    _group(buf, 122)
    _put(buf, 128, None if v.sensor_off else v.spo2, 0.01)
    _put(buf, 130, hr, 1)
    _put(buf, 132, None if v.sensor_off else v.pi, 0.01)
    _group(buf, 136, label=1)  # RR source CO2
    for off, value, factor in ((142, 5.2, 0.01), (144, 0.1, 0.01), (146, 14, 1), (148, 760.0, 0.1)):
        _put(buf, off, value, factor)
    _group(buf, 150)
    _put(buf, 156, 45.0, 0.01)
    _put(buf, 158, 50.0, 0.01)
    for off, value in ((230, v.pulse), (232, 120), (234, 50)):
        _put(buf, off, value, 1)
    struct.pack_into("<H", buf, 276, 0)  # class BASIC
    return bytes(buf)


class S5Sim:
    def __init__(self, vitals: Callable[[float], Vitals], wall_clock: Callable[[], datetime]) -> None:
        self.vitals = vitals
        self.wall_clock = wall_clock
        self.interval_s = 0
        self.requests = 0
        self.stops = 0
        self.frames_in = DatexFrameDecoder()
        self._next_s = 0.0
        self._once = False

    def reboot(self) -> None:
        self.interval_s, self._once = 0, False
        self.frames_in = DatexFrameDecoder()

    def feed(self, data: bytes, t: float) -> bytes:
        for raw in self.frames_in.feed(data):
            record = parse_record(raw)
            for sr_type, body in record.subrecords:
                if record.main_type != 0 or sr_type != 0 or len(body) < 9:
                    continue
                rcrd_type, tx_ival = struct.unpack_from("<Bh", body)
                if rcrd_type != 1:
                    continue  # trends need a patient case; not simulated
                self.requests += 1
                if tx_ival == 0:
                    self.interval_s, self.stops = 0, self.stops + 1
                elif tx_ival == -1:
                    self._once = True
                elif tx_ival >= 5:
                    self.interval_s, self._next_s = tx_ival, t
        return self.poll(t)

    def poll(self, t: float) -> bytes:
        due = self._once or (self.interval_s and t >= self._next_s)
        if not due:
            return b""
        self._once = False
        if self.interval_s:
            self._next_s = t + self.interval_s
        when = self.wall_clock()
        sub = phdb_subrecord(self.vitals(t), when, t)
        record = build_record(0, [(1, sub)], r_time=_unix(when), dri_level=10)
        return encode_frame(record)
