"""Characteristic values -> device events, and the hex-line codec `bedside decode` uses.

`CHARACTERISTICS` is the one table of what the gateway reads: name, 16-bit UUID
and pure decoder. `MeasurementStream` turns decoded values into `Reading`s for one
device: it numbers them, keeps conditions edge-triggered, and joins a glucose
measurement with the context that follows it (held until the context, the next
measurement or `flush`; never dropped).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.ble.family import BLE_PROFILE_NAMES
from drivers.ble.glucose import decode_glucose, decode_glucose_context
from drivers.ble.measurement import Measurement
from drivers.ble.numbers import BleDecodeError
from drivers.ble.vitals import (
    decode_battery,
    decode_blood_pressure,
    decode_heart_rate,
    decode_plx_continuous,
    decode_plx_spot,
    decode_temperature,
    decode_weight,
)
from drivers.codec import CodecStats, ConditionTracker

__all__ = [
    "BLE_CODECS",
    "CHARACTERISTICS",
    "MAX_LINE_BYTES",
    "VALUES_PER_MEASUREMENT",
    "Characteristic",
    "HexLineCodec",
    "MeasurementStream",
    "measurement_seq",
    "reading_seq",
    "uuid16",
]

BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """Full 128-bit UUID string of a Bluetooth SIG 16-bit UUID, as bleak spells it."""
    return f"0000{short:04x}{BASE_UUID_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Characteristic:
    name: str
    short: int
    decode: Callable[[bytes], Measurement] | None  # None: handled apart (glucose context)

    @property
    def uuid(self) -> str:
        return uuid16(self.short)


CHARACTERISTICS: Final = {
    c.name: c
    for c in (
        Characteristic("heart-rate", 0x2A37, decode_heart_rate),
        Characteristic("plx-spot", 0x2A5E, decode_plx_spot),
        Characteristic("plx-continuous", 0x2A5F, decode_plx_continuous),
        Characteristic("temperature", 0x2A1C, decode_temperature),
        Characteristic("intermediate-temperature", 0x2A1E, decode_temperature),
        Characteristic("blood-pressure", 0x2A35, decode_blood_pressure),
        Characteristic("glucose", 0x2A18, decode_glucose),
        Characteristic("glucose-context", 0x2A34, None),
        Characteristic("weight", 0x2A9D, decode_weight),
        Characteristic("battery", 0x2A19, decode_battery),
    )
}
_BY_SHORT: Final = {c.short: c for c in CHARACTERISTICS.values()}
CONDITIONS: Final = ("sensor_off", "low_battery")


VALUES_PER_MEASUREMENT: Final = 64


def reading_seq(measurement: int, index: int) -> int:
    """The `Reading.seq` of the `index`-th value of measurement number `measurement`.

    One notification carries several values (a heart-rate measurement and its RR
    intervals, systolic/diastolic/mean), and every value needs its own id for the
    uplink's de-duplication, while the measurement's own number (a glucose record's
    sequence number) must stay recoverable: `measurement_seq` undoes this. 64 slots
    cover the 10 values a 20-byte notification at the default ATT MTU can hold;
    a value past slot 63 would share an id with the next measurement.
    """
    return measurement * VALUES_PER_MEASUREMENT + index


def measurement_seq(reading: int) -> int:
    """The measurement (glucose record) number a `reading_seq` id came from."""
    return reading // VALUES_PER_MEASUREMENT


class MeasurementStream:
    """Decoded characteristic values of one device -> `DeviceEvent`s."""

    def __init__(self, device_id: str, low_battery_pct: int = 20) -> None:
        self.device_id = device_id
        self.stats = CodecStats()
        self._seq = 0
        self._low_battery_pct = low_battery_pct
        self._conditions = ConditionTracker(device_id, CONDITIONS)
        self._active: dict[str, frozenset[str]] = {}  # conditions per characteristic
        self._pending: Measurement | None = None  # glucose waiting for its context

    def value(self, name: str, data: bytes, stored: bool = False) -> list[DeviceEvent]:
        """One notification/indication/read of characteristic `name`."""
        self.stats.bytes_in += len(data)
        char = CHARACTERISTICS[name]
        try:
            if char.decode is None:
                return self._context(data)
            measurement = char.decode(bytes(data))
        except BleDecodeError as exc:
            self.stats.frames_bad += 1
            return [TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=str(exc))]
        self.stats.frames_ok += 1
        if stored:
            measurement = _with_flags(measurement, frozenset({"stored"}))
        events = self.flush()
        if "context_follows" in measurement.flags:
            self._pending = measurement
            return events
        return events + self._emit(measurement)

    def flush(self) -> list[DeviceEvent]:
        """Emit a held glucose measurement whose context never came."""
        pending, self._pending = self._pending, None
        return [] if pending is None else self._emit(pending)

    def _context(self, data: bytes) -> list[DeviceEvent]:
        context = decode_glucose_context(bytes(data))
        self.stats.frames_ok += 1
        pending = self._pending
        if pending is None or pending.seq != context.seq:
            return self.flush()  # a context without its measurement carries no value
        self._pending = None
        joined = _with_flags(pending, context.flags)
        return self._emit(replace(joined, flags=joined.flags - {"context_follows"}))

    def _emit(self, m: Measurement) -> list[DeviceEvent]:
        self._seq += 1
        seq = m.seq if m.seq is not None else self._seq
        conditions = set(m.conditions)
        battery = m.extra.get("battery_pct")
        if battery is not None and battery <= self._low_battery_pct:
            conditions.add("low_battery")
        self._active[m.characteristic] = frozenset(conditions)
        # One id per value: a heart-rate notification carries several RR intervals.
        # A record the device numbered (a glucose record) has its own identity: the
        # same record fetched again, on a new connection or after a restart, keeps
        # its observation id (with the device and the record's time and label).
        events: list[DeviceEvent] = [
            Reading(
                self.device_id,
                v.label,
                v.value,
                v.unit,
                m.device_time,
                v.flags | m.flags,
                reading_seq(seq, i),
                origin="" if m.seq is None else f"record.{m.seq}.{i}",
            )
            for i, v in enumerate(m.values)
            if v.label != "BATTERY"  # battery level is a technical condition, not a vital sign
        ]
        events += self._conditions.update(set().union(*self._active.values()))
        return events


def _with_flags(m: Measurement, flags: frozenset[str]) -> Measurement:
    return Measurement(m.characteristic, m.values, m.device_time, m.flags | flags, m.conditions, m.seq, m.extra)


_PREFIX_RE: Final = re.compile(rb"^\s*(?:0x)?([0-9A-Fa-f]{4})\s*:")
# A characteristic value is at most 512 bytes: 1536 characters as spaced hex, plus
# a prefix and a comment. Longer lines are dropped and counted.
MAX_LINE_BYTES: Final = 8192


class HexLineCodec:
    """`bedside decode --protocol ble-<name>`: one hex-encoded value per line.

    Spaces between bytes are allowed, `#` starts a comment. A line may name
    its characteristic with a 16-bit UUID prefix (`2A34: 02 01 00 01`), so a
    glucose file can hold measurements and their contexts.
    """

    def __init__(self, device_id: str, name: str) -> None:
        self.device_id = device_id
        self.name = name
        self._stream = MeasurementStream(device_id)
        self.stats = self._stream.stats
        self._buf = bytearray()
        self._overlong = False  # the current line went over MAX_LINE_BYTES: skipped to its end

    def data_to_send(self) -> bytes:
        return b""

    def feed(self, data: bytes) -> list[DeviceEvent]:
        # Only the new bytes are searched for line ends, and a line is bounded: the
        # old split of the whole buffer per chunk was quadratic (issue #14).
        events: list[DeviceEvent] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            events += self._take(data[start:end])
            line, self._buf = bytes(self._buf), bytearray()
            if self._overlong:
                self._overlong = False  # its end: already counted
            else:
                events += self._line(line)
            start = end + 1
        return events + self._take(data[start:])

    def finish(self) -> list[DeviceEvent]:
        rest, self._buf = bytes(self._buf), bytearray()
        events = [] if self._overlong else self._line(rest)
        self._overlong = False
        return events + self._stream.flush()

    def _take(self, part: bytes) -> list[DeviceEvent]:
        if self._overlong:
            return []
        if len(self._buf) + len(part) > MAX_LINE_BYTES:
            self._buf.clear()
            self._overlong = True
            return [self._bad(f"line longer than {MAX_LINE_BYTES} bytes (bound)")]
        self._buf += part
        return []

    def _line(self, line: bytes) -> list[DeviceEvent]:
        line = line.split(b"#", 1)[0].strip()
        if not line:
            return []
        name = self.name
        match = _PREFIX_RE.match(line)
        if match:
            char = _BY_SHORT.get(int(match.group(1), 16))
            if char is None:
                return [self._bad(f"unknown characteristic 0x{match.group(1).decode()}")]
            name, line = char.name, line[match.end() :]
        try:
            value = binascii.unhexlify(b"".join(line.split()))
        except (binascii.Error, ValueError):
            return [self._bad("not hex")]
        return self._stream.value(name, value)

    def _bad(self, detail: str) -> TechnicalEvent:
        self.stats.frames_bad += 1
        return TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail)


def _hex_codec(name: str) -> Callable[[str], HexLineCodec]:
    def make(device_id: str) -> HexLineCodec:
        return HexLineCodec(device_id, name)

    return make


# Codec names for `bedside decode --protocol` (ble-health.md characteristic names).
BLE_CODECS: Final[dict[str, Callable[[str], HexLineCodec]]] = {
    f"ble-{name}": _hex_codec(name) for name in BLE_PROFILE_NAMES
}
