"""GE Datex-Ohmeda S/5 computer interface: a sans-IO session codec for displayed values.

On `opened` it asks the monitor for displayed values every `interval_s` (a DRI
request record: main type 0, subrecord type 0, `dri_phdb_req`); on `closing` it
sends the stop request, so the monitor does not keep transmitting into a dead
port. A monitor that sends nothing for `silence_timeout_s` (rebooted, or the
request was lost) is asked again and `session_lost` is raised once; the next
record clears it. Records decode per subrecord; unknown main types and classes
are skipped. Port profile: 19200 (or 115200) 8E1 with RTS/CTS — mandatory.

Fact sheet: shared/protocols/datex-s5.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.codec import CodecStats, drain
from drivers.datex.frame import DatexFrameDecoder, build_record, encode_frame, parse_record
from drivers.datex.phdb import decode_phdb, phdb_class, phdb_time

__all__ = ["DatexCodec", "DatexTiming", "displayed_values_request"]

DRI_MT_PHDB: Final = 0
DRI_PH_DISPL: Final = 1
CLASS_BASIC: Final = 0


def displayed_values_request(interval_s: int, classes: int = 0) -> bytes:
    """The 49-byte request record; interval 0 stops the transmission."""
    req = struct.pack("<BhIH", DRI_PH_DISPL, interval_s, classes, 0)
    return build_record(DRI_MT_PHDB, [(0, req)])


@dataclass(frozen=True, slots=True)
class DatexTiming:
    interval_s: int = 5  # the monitor's minimum period for displayed values
    silence_timeout_s: float = 15.0  # three missed transmissions
    tick_s: float = 0.5


class DatexCodec:
    def __init__(self, device_id: str, clock: Clock, timing: DatexTiming | None = None) -> None:
        self.device_id = device_id
        self.timing = timing or DatexTiming()
        self.tick_s = self.timing.tick_s
        self.stats = CodecStats()
        self.requests_sent = 0
        self._clock = clock
        self._frames = DatexFrameDecoder()
        self._out = bytearray()
        self._open = False
        self._last_rx_s = 0.0
        self._lost = False
        self._seq = 0

    def data_to_send(self) -> bytes:
        return drain(self._out)

    def opened(self) -> list[DeviceEvent]:
        self._open = True
        self._request()
        return []

    def lost(self) -> list[DeviceEvent]:
        self._open = False
        self._out.clear()
        return []

    def closing(self) -> None:
        if self._open:
            self._out.clear()
            self._out += encode_frame(displayed_values_request(0))
            self._open = False

    def tick(self) -> list[DeviceEvent]:
        if not self._open or self._clock.monotonic() - self._last_rx_s <= self.timing.silence_timeout_s:
            return []
        self._request()
        if self._lost:
            return []
        self._lost = True
        detail = f"no record for {self.timing.silence_timeout_s:g} s; displayed values requested again"
        return [TechnicalEvent(self.device_id, "session_lost", detail=detail)]

    def _request(self) -> None:
        self._out += encode_frame(displayed_values_request(self.timing.interval_s))
        self.requests_sent += 1
        self._last_rx_s = self._clock.monotonic()

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        bad_before = self._frames.stats.frames_bad
        events: list[DeviceEvent] = []
        for raw in self._frames.feed(data):
            try:
                record = parse_record(raw)
                events += self._record(record.main_type, record.subrecords)
            except (ValueError, struct.error) as exc:
                events.append(self._bad(1, f"undecodable record: {exc}"))
                continue
            self.stats.frames_ok += 1
            self._last_rx_s = self._clock.monotonic()
            if self._lost:
                self._lost = False
                events.append(TechnicalEvent(self.device_id, "session_lost", active=False))
        if self._frames.stats.frames_bad != bad_before:
            events.append(self._bad(self._frames.stats.frames_bad - bad_before, self._frames.last_error))
        return events

    def _bad(self, count: int, detail: str) -> TechnicalEvent:
        self.stats.frames_bad += count
        return TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail)

    def _record(self, main_type: int, subrecords: tuple[tuple[int, bytes], ...]) -> list[DeviceEvent]:
        if main_type != DRI_MT_PHDB:
            return []  # waveforms, alarms, network records: not requested here
        events: list[DeviceEvent] = []
        for sr_type, sub in subrecords:
            if sr_type != DRI_PH_DISPL or len(sub) < 278 or phdb_class(sub) != CLASS_BASIC:
                continue
            self._seq += 1
            when = phdb_time(sub)
            for v in decode_phdb(sub):
                events.append(Reading(self.device_id, v.label, v.value, v.unit, when, v.flags, self._seq))
        return events
