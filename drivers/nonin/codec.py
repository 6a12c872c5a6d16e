"""Sans-IO codec for Nonin pulse-oximeter serial data formats #2, #7 and #8.

- #8: 4-byte display packets once a second, synchronised on the only byte with
  bit 7 set; no checksum.
- #2 / #7: 5-byte frames with an additive checksum, 25 frames a packet; the FLOAT
  byte cycles through HR, SpO2, status and display values, so values exist only
  for a complete packet that starts on a SYNC frame.

Emits the display values (what the device shows) as `HR` and `SPO2`, the other
packet values under their own labels, status bits as flags, and edge-triggered
`sensor_off` / `low_battery` events. Missing data (HR 511, SpO2 127) becomes None.
Pleth samples are not emitted (waveforms are out of scope). Format #13 (spot-check
records) has its own codec: drivers/nonin/spot.py.

Structure is checked, never assumed (issue #14): bytes that fail the format's
sync bits, reserved bits, checksum or value ranges (`nonin_sniff`) are counted as
bad frames and skipped, and the decoder resyncs. A #8 packet, having no checksum,
is trusted only in sync: the first one after (re)sync is used when the next one
confirms its alignment (up to one packet, 1 s, later), the following ones at once.
A stream that has the structure of another format yields no values and one
"wrong_mode" event naming the format that fits; it ends when the configured
format is seen again.

Fact sheet: shared/protocols/nonin.md.
"""

from __future__ import annotations

from typing import Final, Literal

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.codec import CodecStats, ConditionTracker
from drivers.nonin.sniff import FormatSniffer, frame_ok, hr_ok, packet8_ok, spo2_ok

__all__ = ["FRAMES_PER_PACKET", "NoninCodec", "NoninFormat"]

NoninFormat = Literal[2, 7, 8]
FRAMES_PER_PACKET: Final = 25
HR_MISSING: Final = 511
SPO2_MISSING: Final = 127
# A #8 packet is not used when another format's structure was seen this close
# before it (bytes): a #2 stream has a frame every 5 bytes.
FOREIGN_WINDOW: Final = 16
# Garbage is consumed as it is scanned, so the buffer never holds more than one
# frame's worth of undecided bytes; this bound only guards against a logic error.
MAX_BUFFER_BYTES: Final = 4096

# Status byte of formats #2/#7.
_SYNC: Final = 0x01
_ARTF: Final = 0x20
_OOT: Final = 0x10
_SNSA: Final = 0x08
_PERF_MASK: Final = 0x06
_PERF_RED: Final = 0x04
_PERF_YELLOW: Final = 0x06
# STAT2 (FLOAT frame 8 in #2/#7) and status 2 of #8.
_SPA: Final = 0x20
_LOW_BAT: Final = 0x01
_SNSA8: Final = 0x08
# Status 1 of #8.
_OOT8: Final = 0x20
_LPRF8: Final = 0x10
_MPRF8: Final = 0x08
_ARTF8: Final = 0x04


def _hr(msb: int, lsb: int) -> float | None:
    value = (msb & 0x03) << 7 | (lsb & 0x7F)
    return None if value == HR_MISSING else float(value)


def _spo2(byte: int) -> float | None:
    value = byte & 0x7F
    return None if value == SPO2_MISSING else float(value)


class NoninCodec:
    def __init__(self, device_id: str, data_format: NoninFormat = 8) -> None:
        if data_format not in (2, 7, 8):
            raise ValueError(f"unsupported Nonin data format {data_format}")
        self.device_id = device_id
        self.data_format = data_format
        self.stats = CodecStats()
        self._buf = bytearray()
        self._in_garbage = False
        self._packet: list[tuple[int, int]] = []  # (status, float) per frame
        self._packets = 0
        self._conditions = ConditionTracker(device_id, ("sensor_off", "low_battery"))
        self._sniffer = FormatSniffer()
        self._consumed = 0  # stream offset of _buf[0]
        self._locked = False  # #8: the last packet was good, the next one is where it ended
        self._wrong_mode = False

    def data_to_send(self) -> bytes:
        return b""

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        self._sniffer.feed(data)  # first: a packet is judged with the bytes around it seen
        self._buf += data
        events: list[DeviceEvent] = self._mode_events()
        pos = self._scan8(events) if self.data_format == 8 else self._scan_frames(events)
        del self._buf[:pos]
        self._consumed += pos
        if len(self._buf) > MAX_BUFFER_BYTES:
            self._consumed += len(self._buf)
            self._buf.clear()
        return events

    def _foreign(self) -> list[int]:
        return [f for f in (2, 7, 8) if f != self.data_format]

    def _mode_events(self) -> list[DeviceEvent]:
        confirmed = self._sniffer.confirmed
        if not self._wrong_mode and confirmed is not None and confirmed != self.data_format:
            self._wrong_mode = True
            self._packet.clear()
            detail = f"stream looks like format #{confirmed}, configured #{self.data_format}"
            return [TechnicalEvent(self.device_id, "wrong_mode", active=True, detail=detail)]
        if self._wrong_mode and confirmed == self.data_format:
            self._wrong_mode = False
            detail = f"stream is format #{self.data_format} again"
            return [TechnicalEvent(self.device_id, "wrong_mode", active=False, detail=detail)]
        return []

    def _foreign_near(self, start: int) -> bool:
        """Another format's structure was seen around the packet at stream offset `start`."""
        return self._wrong_mode or any(self._sniffer.evidence_at(f) >= start - FOREIGN_WINDOW for f in self._foreign())

    def _garbage(self, events: list[DeviceEvent], detail: str) -> None:
        # A run of unsynchronised bytes is one bad frame, not one per byte.
        if not self._in_garbage:
            self._in_garbage = True
            self.stats.frames_bad += 1
            events.append(TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail))

    # -- format 8 ---------------------------------------------------------------
    def _scan8(self, events: list[DeviceEvent]) -> int:
        buf, pos = self._buf, 0
        while len(buf) - pos >= 4:
            b1, b2, b3, b4 = buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]
            if not packet8_ok(b1, b2, b3, b4):
                self._locked = False
                self._garbage(events, "format 8 sync, reserved bits or value range")
                pos += 1
                continue
            if not self._locked:
                # No checksum: a lone match may be noise. The next packet, right
                # after this one, confirms the alignment.
                if len(buf) - pos < 8:
                    break
                if not packet8_ok(buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]):
                    self._garbage(events, "format 8 packet not confirmed by the next one")
                    pos += 1
                    continue
                self._locked = True
            self._in_garbage = False
            pos += 4
            if self._foreign_near(self._consumed + pos - 4):
                self.stats.frames_bad += 1  # structure of another format: not a value of ours
                continue
            self.stats.frames_ok += 1
            self._packets += 1
            flags = set()
            if b1 & _OOT8:
                flags |= {"out_of_track", "artifact"}
            if b1 & _ARTF8:
                flags.add("artifact")
            if b1 & _LPRF8:
                flags.add("low_perfusion")
            if b1 & _MPRF8:
                flags.add("marginal_perfusion")
            flags |= self._status2_flags(b4, b4 & _SNSA8 != 0)
            self._emit(events, {"HR": _hr(b1, b2), "SPO2": _spo2(b3)}, flags)
        return pos

    # -- formats 2 and 7 --------------------------------------------------------
    def _scan_frames(self, events: list[DeviceEvent]) -> int:
        buf, pos = self._buf, 0
        status_at = 1 if self.data_format == 2 else 0
        while len(buf) - pos >= 5:
            frame = buf[pos : pos + 5]
            if not frame_ok(self.data_format, frame):
                if self._packet:
                    self._packet.clear()  # never emit values from a broken packet
                self._garbage(events, f"format {self.data_format} checksum or sync failure")
                pos += 1
                continue
            self._in_garbage = False
            self.stats.frames_ok += 1
            self._frame(frame[status_at], frame[3], events)
            pos += 5
        return pos

    def _frame(self, status: int, float_byte: int, events: list[DeviceEvent]) -> None:
        if status & _SYNC:
            if self._packet:
                self.stats.frames_bad += 1  # SYNC came early: the packet was cut short
                events.append(
                    TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail="short packet")
                )
            self._packet = [(status, float_byte)]
        elif self._packet:
            self._packet.append((status, float_byte))
        # Frames before the first SYNC belong to a packet we joined mid-way: ignore.
        if len(self._packet) == FRAMES_PER_PACKET:
            self._packet_done(events)
            self._packet = []

    def _packet_done(self, events: list[DeviceEvent]) -> None:
        f = [fl for _, fl in self._packet]
        hrs = [(f[a] & 0x03) << 7 | (f[b] & 0x7F) for a, b in ((0, 1), (13, 14), (19, 20), (21, 22))]
        spo2s = [f[i] & 0x7F for i in (2, 8, 9, 10, 15, 16)]
        if not all(map(hr_ok, hrs)) or not all(map(spo2_ok, spo2s)):
            self.stats.frames_bad += 1
            events.append(
                TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail="value out of range")
            )
            return
        if self._wrong_mode:
            return  # checksummed, but the stream as a whole is another format
        self._packets += 1
        statuses = [st for st, _ in self._packet]
        flags: set[str] = set()
        if any(st & _ARTF for st in statuses):
            flags.add("artifact")
        if any(st & _OOT for st in statuses):
            flags |= {"out_of_track", "artifact"}
        perf = {st & _PERF_MASK for st in statuses}
        if _PERF_RED in perf:
            flags.add("low_perfusion")
        elif _PERF_YELLOW in perf:
            flags.add("marginal_perfusion")
        sensor_alarm = any(st & _SNSA for st in statuses)
        flags |= self._status2_flags(f[7], sensor_alarm)
        values = {
            "HR": _hr(f[19], f[20]),
            "SPO2": _spo2(f[8]),
            "HR-REC": _hr(f[0], f[1]),
            "SPO2-REC": _spo2(f[2]),
            "SPO2-FAST": _spo2(f[9]),
            "SPO2-BB": _spo2(f[10]),
            "E-HR": _hr(f[13], f[14]),
            "E-SPO2": _spo2(f[15]),
            "E-SPO2-D": _spo2(f[16]),
            "E-HR-D": _hr(f[21], f[22]),
        }
        self._emit(events, values, flags)

    # -- shared -----------------------------------------------------------------
    @staticmethod
    def _status2_flags(status2: int, sensor_alarm: bool) -> set[str]:
        flags = set()
        if sensor_alarm:
            flags.add("sensor_off")
        if status2 & _SPA:
            flags.add("smartpoint")
        if status2 & _LOW_BAT:
            flags.add("low_battery")
        return flags

    def _emit(self, events: list[DeviceEvent], values: dict[str, float | None], flags: set[str]) -> None:
        for label, value in values.items():
            unit = "%" if "SPO2" in label else "1/min"
            reading_flags = frozenset(flags | {"missing"}) if value is None else frozenset(flags)
            events.append(Reading(self.device_id, label, value, unit, flags=reading_flags, seq=self._packets))
        events += self._conditions.update(flags)
