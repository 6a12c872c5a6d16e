"""Sans-IO codec for Masimo SET / rainbow serial "ASCII 1" output.

One text line per second (Rad-8, Radical-5, Radical-7, Rad-7 colour). Fields are
parsed by name, not position, because the field set differs by model. The codec
emits one `Reading` per field, EXC/ALARM bits as named flags, and edge-triggered
`sensor_off` / `low_battery` technical events. It does not map labels to MDC codes
(the normalizer does) and does not know the host clock.

Fact sheet: shared/protocols/masimo-ascii.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.codec import CodecStats, ConditionTracker

__all__ = ["ALARM_BITS", "EXC_BITS", "MAX_LINE_BYTES", "MasimoCodec"]

# Longest real line is the Rad-7 colour one (~170 bytes); anything past this is not
# ASCII 1 and is dropped as one bad frame.
MAX_LINE_BYTES: Final = 512

EXC_BITS: Final[dict[int, str]] = {
    0x000001: "no_sensor",
    0x000002: "defective_sensor",
    0x000004: "low_perfusion",
    0x000008: "pulse_search",
    0x000010: "interference",
    0x000020: "sensor_off",
    0x000040: "ambient_light",
    0x000080: "unrecognized_sensor",
    0x000100: "incompatible_sensor",
    0x000400: "low_signal_iq",
    0x000800: "masimo_set",
    0x001000: "no_cable",
    0x002000: "cable_expired",
    0x004000: "incompatible_cable",
    0x008000: "unrecognized_cable",
    0x010000: "defective_cable",
    0x020000: "sensor_calibrating",
    0x040000: "sensor_expired",
    0x080000: "emitter_temperature",
    0x100000: "sensor_current_limit",
    0x200000: "spco_low_confidence",
    0x400000: "spmet_low_confidence",
}

ALARM_BITS: Final[dict[int, str]] = {
    0x0001: "alarm_spo2_high",
    0x0002: "alarm_spo2_low",
    0x0004: "alarm_pr_high",
    0x0008: "alarm_pr_low",
    0x0010: "alarm_active",
    0x0020: "alarm_silenced",
    0x0040: "low_battery",
    0x0100: "alarm_spco_high",
    0x0200: "alarm_spco_low",
    0x0400: "alarm_spmet_high",
    0x0800: "alarm_spmet_low",
    0x1000: "alarm_desat_index",
    0x2000: "alarm_pi_delta",
}

# EXC bits under which a 000 SpO2 / pulse means "no reading" (fact sheet §3).
_NO_READING_EXC: Final = 0x001 | 0x002 | 0x008 | 0x020 | 0x080
_SENSOR_OFF_EXC: Final = 0x001 | 0x020 | 0x1000

UNITS: Final[dict[str, str]] = {
    "SPO2": "%",
    "BPM": "1/min",
    "PI": "%",
    "SPCO": "%",
    "SPMET": "%",
    "SPHB": "g/dl",
    "SPOC": "ml/dl",
    "DESAT": "",
    "PIDELTA": "%",
    "PVI": "%",
}
_NOT_READINGS: Final = frozenset({"SN", "ALARM", "EXC", "EXC1"})
_PER_FIELD_FLAGS: Final = {"spco_low_confidence": "SPCO", "spmet_low_confidence": "SPMET"}
_EOL_RE: Final = re.compile(rb"[\r\n]")


def _bits_to_flags(value: int, table: dict[int, str], prefix: str) -> set[str]:
    flags = set()
    bit = 1
    while bit <= value:
        if value & bit:
            flags.add(table.get(bit, f"{prefix}_0x{bit:06x}"))
        bit <<= 1
    return flags


def _parse_value(text: str) -> float | None:
    text = text.rstrip("%")
    # The first character may be a sign, so "not available" is tested on the second
    # (MD PnP's rule), and any all-dash spelling counts too.
    if not text.strip("-.+") or (len(text) > 1 and text[1] == "-"):  # empty, or only dashes, dots, signs
        return None
    try:
        return float(text)
    except ValueError:
        return None


_NO_FLAGS: Final[frozenset[str]] = frozenset()
_STAMP_RE: Final = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")


def _parse_stamp(line: str) -> datetime | None:
    """`MM/DD/YY HH:MM:SS` -> naive device time; None if it is not a real date and time.

    YY is always 20YY. The line carries two year digits only (fact sheet §2); every
    device that prints ASCII 1 (Rad-8, Radical-5/7, Rad-7) was built after 2000 and
    the fact sheet's lines are from 2010 and 2016. strptime's %y would make 69-99
    into 1969-1999, a time decades before any such device: "99" is a clock set to
    2099 or never set at all, and the normalizer's clock-skew check (not this codec)
    decides whether to trust it.
    """
    match = _STAMP_RE.match(line)
    if match is None:
        return None
    month, day, year, hour, minute, second = (int(g) for g in match.groups())
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError:  # 02/30, month 13, hour 24: not a time at all
        return None


class MasimoCodec:
    """Feed bytes, get readings; one complete ASCII 1 line at a time."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.stats = CodecStats()
        self.serial_number: str | None = None
        self._buf = bytearray()
        self._overflowed = False
        self._wrong_mode_reported = False
        self._conditions = ConditionTracker(device_id, ("sensor_off", "low_battery"))

    def data_to_send(self) -> bytes:
        return b""  # the oximeter's port is output-only

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        events: list[DeviceEvent] = []
        # NULs are line padding on some Rad-7 units; they never carry data.
        self._buf += data.replace(b"\x00", b"")
        *lines, rest = _EOL_RE.split(self._buf)
        for line in lines:
            if self._overflowed:
                self._overflowed = False  # the tail of a line already counted as bad
            elif len(line) > MAX_LINE_BYTES:
                events.append(self._bad(f"line longer than {MAX_LINE_BYTES} bytes"))
            elif line:
                events += self._line(line)
        if len(rest) > MAX_LINE_BYTES:
            rest = b""
            if not self._overflowed:
                self._overflowed = True
                events.append(self._bad(f"line longer than {MAX_LINE_BYTES} bytes"))
        self._buf = bytearray(rest)
        return events

    def _bad(self, detail: str) -> TechnicalEvent:
        self.stats.frames_bad += 1
        return TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail)

    def _line(self, raw: bytes) -> list[DeviceEvent]:
        line = raw.decode("ascii", errors="replace")  # one character per byte: offsets agree
        # A line cut short (the device lost power mid-line, fact sheet §6) runs on into the
        # next one: a date and time stamp past the start is where that next line begins
        # (no field value holds a space, a stamp does). Its values must not take the cut
        # line's time, so the head is one bad frame and the rest is read on its own.
        starts = [m.start() for m in _STAMP_RE.finditer(line)]
        if starts and starts[-1] > 0:
            return [self._bad("line cut short: a new line began inside it"), *self._line(raw[starts[-1] :])]
        stamp = _parse_stamp(line)
        if stamp is None:
            return [self._bad("no valid date/time at line start")]
        fields: dict[str, str] = {}
        for token in line[17:].split():
            name, sep, text = token.partition("=")
            if sep:
                fields[name] = text
        if not fields:
            return [self._bad("no fields")]
        if "PR" in fields or ":" in fields.get("EXC", ""):
            return self._wrong_mode()
        try:
            exc = int(fields.get("EXC", "0"), 16)
            alarm = int(fields.get("ALARM", "0"), 16)
        except ValueError:
            return [self._bad("EXC or ALARM not hexadecimal")]
        self.stats.frames_ok += 1
        if "SN" in fields and _parse_value(fields["SN"]) is not None:
            self.serial_number = fields["SN"]
        line_flags = _bits_to_flags(exc, EXC_BITS, "exc") | _bits_to_flags(alarm, ALARM_BITS, "alarm")
        events: list[DeviceEvent] = []
        for name, text in fields.items():
            if name in _NOT_READINGS:
                continue
            value = _parse_value(text)
            if name in ("SPO2", "BPM") and value == 0 and exc & _NO_READING_EXC:
                value = None
            # The common line has no flags: share one empty set rather than build one per field.
            flags = (
                frozenset(f for f in line_flags if _PER_FIELD_FLAGS.get(f, name) == name) if line_flags else _NO_FLAGS
            )
            events.append(
                Reading(
                    self.device_id,
                    name,
                    value,
                    UNITS.get(name, ""),
                    device_time=stamp,
                    flags=flags,
                    seq=self.stats.frames_ok,
                )
            )
        present = {"low_battery"} if alarm & 0x40 else set()
        if exc & _SENSOR_OFF_EXC:
            present.add("sensor_off")
        events += self._conditions.update(present)
        return events

    def _wrong_mode(self) -> list[DeviceEvent]:
        bad = self._bad("ASCII 2 / trend line: set the oximeter's serial output to ASCII 1")
        if self._wrong_mode_reported:
            return [bad]
        self._wrong_mode_reported = True
        return [bad, TechnicalEvent(self.device_id, "wrong_mode", detail="serial output is not ASCII 1")]
