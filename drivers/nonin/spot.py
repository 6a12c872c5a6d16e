"""Sans-IO codec for Nonin data format #13: SmartPoint spot-check records.

Record (shared/protocols/nonin.md §6): `00 02 00 0D`, a big-endian length N
(at least 14), N data bytes (BCD century, year, month, day, hour, minute,
second, fraction; STATUS word; HR MSB/LSB; reserved; SpO2; any bytes a longer
record adds), a checksum (low byte of the sum of the N data bytes) and ETX.

The device sends one record per measurement, and records it stored while no host
was connected (MEM) oldest first, so every record carries its own time: readings
get the device's timestamp and the `stored` flag, which makes the gateway keep
that time instead of judging it against the live clock (a spot check is
episodic; a record from memory is old by nature). `spot_check` marks every such
reading, `from_memory` the ones the device held back, `smartpoint` a
high-quality (SPA) measurement; without SPA the value is `not_smartpoint`
(questionable). NOMS (no measurement) and the missing-data values (HR 511,
SpO2 127) become None with `missing`.

Bad input (issue #14 rules): a record with a wrong checksum, ETX, length, BCD
digit, date or value range is counted as a bad frame and skipped by one byte,
so the scan resyncs on the next record start (a length that claims bytes holding a
whole good record is bad at once, not when more bytes come); bytes outside records are skipped,
one bad frame per run (the 9560's ACK / NAK bytes, 0x06 / 0x15, are expected and
skipped silently). LOW BAT is an edge-triggered `low_battery` event. No I/O; the
clock is not needed (the record's time is the device's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.codec import CodecStats, ConditionTracker

__all__ = ["HEADER", "MAX_LENGTH", "MIN_LENGTH", "NoninSpotCodec", "checksum"]

HEADER: Final = b"\x00\x02\x00\x0d"
MIN_LENGTH: Final = 14
# Format #13 is "expandable"; no documented record is longer. The bound keeps a
# corrupt length from making the codec wait for (and hold) kilobytes.
MAX_LENGTH: Final = 64
_ETX: Final = 0x03
_HANDSHAKE: Final = frozenset({0x06, 0x15})  # ACK / NAK to a host command
_SPA: Final = 0x0200
_NOMS: Final = 0x0100
_MEM: Final = 0x0010
_LOW_BAT: Final = 0x0001
HR_MISSING: Final = 511
SPO2_MISSING: Final = 127


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


class SpotRecordError(ValueError):
    """A record that has a start and an end but does not hold together."""


def _bcd(byte: int) -> int:
    high, low = byte >> 4, byte & 0x0F
    if high > 9 or low > 9:  # not a decimal digit
        raise SpotRecordError(f"byte 0x{byte:02x} is not BCD")
    return high * 10 + low


def _time(data: bytes) -> datetime:
    century, year, month, day, hour, minute, second = (_bcd(b) for b in data[:7])
    _bcd(data[7])  # fraction of a second: always 00, checked as BCD, not used
    try:
        return datetime(century * 100 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise SpotRecordError(f"impossible date: {exc}") from None


class NoninSpotCodec:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.stats = CodecStats()
        self._buf = bytearray()
        self._records = 0
        self._conditions = ConditionTracker(device_id, ("low_battery",))
        self._skipping = False  # inside a run of bytes outside records (counted once)

    def data_to_send(self) -> bytes:
        return b""

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        self._buf += data
        events: list[DeviceEvent] = []
        while self._buf:
            start = self._buf.find(HEADER)
            if start != 0:
                # Everything before a record start (or all of it, but a possible
                # start at the end) is outside a record.
                keep = start if start > 0 else self._tail_start()
                self._skip(bytes(self._buf[:keep]), events)
                del self._buf[:keep]
                if start < 0:
                    break
            end = self._record_end()
            if end is None and self._whole_record_after_start():
                # A corrupt length claims bytes that hold a whole good record: this one is
                # bad now, not when more bytes come (a spot-check device may send its next
                # record hours later).
                self._bad(events, "record cut short by the next record")
                del self._buf[:1]
                continue
            if end is None:
                break  # the rest of the record has not come yet
            if end < 0:
                self._bad(events, f"record length {int.from_bytes(self._buf[4:6], 'big')} outside 14..{MAX_LENGTH}")
                del self._buf[:1]
                continue
            record = bytes(self._buf[:end])
            try:
                events += self._record(record)
            except SpotRecordError as exc:
                self._bad(events, str(exc))
                del self._buf[:1]  # resync: the next record may start inside this one
                continue
            del self._buf[:end]
            self._skipping = False
        return events

    def _tail_start(self) -> int:
        """Where a record start might begin at the end of the buffer (kept for the next feed)."""
        for n in range(len(HEADER) - 1, 0, -1):
            if self._buf.endswith(HEADER[:n]):
                return len(self._buf) - n
        return len(self._buf)

    def _whole_record_after_start(self) -> bool:
        """A complete record (length, checksum and ETX right) starts later in the buffer."""
        at = self._buf.find(HEADER, 1)
        while at > 0:
            if len(self._buf) >= at + 6:
                length = int.from_bytes(self._buf[at + 4 : at + 6], "big")
                end = at + 6 + length + 2
                if MIN_LENGTH <= length <= MAX_LENGTH and len(self._buf) >= end:
                    data = bytes(self._buf[at + 6 : at + 6 + length])
                    if self._buf[end - 1] == _ETX and self._buf[end - 2] == checksum(data):
                        return True
            at = self._buf.find(HEADER, at + 1)
        return False

    def _record_end(self) -> int | None:
        """The length of the record at the buffer's start; None if incomplete, -1 if impossible."""
        if len(self._buf) < 6:  # header and length not all here yet
            return None
        length = int.from_bytes(self._buf[4:6], "big")
        if not MIN_LENGTH <= length <= MAX_LENGTH:
            return -1
        total = 6 + length + 2
        return total if len(self._buf) >= total else None

    def _skip(self, skipped: bytes, events: list[DeviceEvent]) -> None:
        if not skipped.strip(bytes(_HANDSHAKE)) or self._skipping:
            return
        self._skipping = True
        self._bad(events, "bytes outside a #13 record skipped")

    def _bad(self, events: list[DeviceEvent], detail: str) -> None:
        self.stats.frames_bad += 1
        events.append(TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail))

    def _record(self, record: bytes) -> list[DeviceEvent]:
        data = record[6:-2]
        if record[-2] != checksum(data):
            raise SpotRecordError(f"checksum 0x{record[-2]:02x}, expected 0x{checksum(data):02x}")
        if record[-1] != _ETX:
            raise SpotRecordError(f"record ends with 0x{record[-1]:02x}, not ETX")
        when = _time(data)
        status = int.from_bytes(data[8:10], "big")
        if data[10] & 0xFE or data[13] & 0x80:
            raise SpotRecordError("HR MSB or SpO2 has a bit set that must be 0")
        hr = (data[10] & 0x01) << 8 | data[11]
        spo2 = data[13] & 0x7F
        self.stats.frames_ok += 1
        self._records += 1
        flags = {"spot_check", "stored", "smartpoint" if status & _SPA else "not_smartpoint"}
        if status & _MEM:
            flags.add("from_memory")
        events: list[DeviceEvent] = list(self._conditions.update({"low_battery"} if status & _LOW_BAT else set()))
        measured = not status & _NOMS  # NOMS: the fields hold no measurement, whatever they say
        values = {
            "HR": float(hr) if measured and hr != HR_MISSING else None,
            "SPO2": float(spo2) if measured and spo2 != SPO2_MISSING else None,
        }
        for row, (label, value) in enumerate(values.items()):
            own = flags | {"missing"} if value is None else flags
            unit = "/min" if label == "HR" else "%"
            seq = self._records * 2 + row
            events.append(Reading(self.device_id, label, value, unit, when, frozenset(own), seq))
        return events
