"""HL7 v2 receiver codec: MLLP blocks (or bare messages) in, readings out, ACKs to send.

One codec per connection (TCP) or per serial port. Every message is answered in
the mode its MSH-15/16 ask for (see `pcd.build_ack`); an accepted ORU^R01 yields
one reading per numeric OBX, labelled `code^REFID` from OBX-3 (the normalizer
takes the MDC term from the label itself). ORU^R40 alerts become device-alarm
flags (`alarm_<priority>_<phys|tech|advisory>_<event>_<source>`) carried by the
alarming metric's reading, or by an `MDC_EVT_ALARM` carrier reading without a
value when the source is a device, and by every later reading from this sender
until the alert ends, so the rule engine sees one consistent set. Messages that
are refused or in error are counted as bad frames with the reason.

A message resent with the same sender and MSH-10 (the sender's retry after a lost
ACK) is acknowledged again but not used twice.

Bare messages (a `.hl7` file without MLLP framing) are accepted too: they are
split at each MSH at a segment start, and `finish()` flushes the last one.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Final

from appliance.clock import Clock, MonotonicUTC
from appliance.model import DeviceEvent, Reading, TechnicalEvent
from drivers.codec import CodecStats, drain
from drivers.hl7.message import Hl7Error, Hl7Message, parse
from drivers.hl7.mllp import VT, MllpDecoder, frame
from drivers.hl7.pcd import PcdResult, PcdValue, Verdict, build_ack, interpret

__all__ = ["ALERT_CARRIER", "Hl7Codec"]

ALERT_CARRIER: Final = "196616^MDC_EVT_ALARM"
MAX_SEEN_IDS: Final = 1024  # control ids remembered to spot a sender's resend of a message we took
MAX_ACTIVE_ALERTS: Final = 256  # per sender; a flood of never-ended alerts cannot grow without bound
_ids: Final = itertools.count(1)


class Hl7Codec:
    def __init__(self, device_id: str, clock: Clock | None = None, app: str = "BEDSIDE_GW") -> None:
        self.device_id = device_id
        self.stats = CodecStats()
        self.acks: list[str] = []  # MSA-1 codes sent, for the bench and tests
        self.responses: list[str] = []  # ACKs received (a sender's own ACK to our ACK is a protocol error)
        self._clock = clock or MonotonicUTC()
        self._app = app
        self._mllp = MllpDecoder()
        self._bare = bytearray()
        self._framed: bool | None = None
        self._out = bytearray()
        self._active: dict[str, str] = {}  # alert id -> flag
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.duplicates = 0
        self._seq = 0

    def data_to_send(self) -> bytes:
        return drain(self._out)

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        if self._framed is None and data.strip():
            self._framed = data.lstrip(b" \r\n\t")[:1] == bytes((VT,))  # (VT is whitespace to strip())
        if not self._framed:
            return self._feed_bare(data)
        bad_before = self._mllp.stats.blocks_bad
        events: list[DeviceEvent] = []
        for block in self._mllp.feed(data):
            events += self._message(block, framed=True)
        if self._mllp.stats.blocks_bad != bad_before:
            self.stats.frames_bad += self._mllp.stats.blocks_bad - bad_before
            events.append(self._bad_event(self._mllp.last_error))
        return events

    def finish(self) -> list[DeviceEvent]:
        """End of a bare file: the last message has no MSH after it."""
        if self._framed or not self._bare.strip():
            return []
        block, self._bare = bytes(self._bare), bytearray()
        return self._message(block, framed=False)

    def _feed_bare(self, data: bytes) -> list[DeviceEvent]:
        self._bare += data
        events: list[DeviceEvent] = []
        while True:
            ends = [i for i in (self._bare.find(b"\rMSH", 1), self._bare.find(b"\nMSH", 1)) if i > 0]
            if not ends:
                return events
            block = bytes(self._bare[: min(ends) + 1])
            del self._bare[: min(ends) + 1]
            events += self._message(block, framed=False)

    # -- one message -----------------------------------------------------------------
    def _message(self, block: bytes, framed: bool) -> list[DeviceEvent]:
        msg: Hl7Message | None
        try:
            msg = parse(block)
            result = interpret(msg)
        except Hl7Error as exc:
            msg, result = None, PcdResult(Verdict("reject", 100, str(exc)))
        if result.is_response:
            self.responses.append(result.verdict.text)  # an ACK sent to us: read, never answered
            return []
        ack = build_ack(msg, result.verdict, self._clock.now(), f"GW{next(_ids)}", self._app)
        if ack is not None and framed:
            self._out += frame(ack)
            self.acks.append(ack.split(b"\rMSA|", 1)[1][:2].decode())
        if result.verdict.outcome == "accept" and msg is not None:
            key = (msg.msh.raw(3), msg.msh.raw(10))
            if key in self._seen:  # our ACK was lost and the sender retried: ACKed again, used once
                self.duplicates += 1
                return []
            self._seen[key] = None
            if len(self._seen) > MAX_SEEN_IDS:
                self._seen.popitem(last=False)
        if result.verdict.outcome != "accept":
            self.stats.frames_bad += 1
            return [self._bad_event(f"{result.verdict.outcome} ({result.verdict.err_code}): {result.verdict.text}")]
        self.stats.frames_ok += 1
        self._seq += 1
        return self._readings(result)

    def _bad_event(self, detail: str) -> TechnicalEvent:
        return TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail)

    def _readings(self, result: PcdResult) -> list[DeviceEvent]:
        events: list[DeviceEvent] = []
        carriers: list[PcdValue | None] = []
        for alert in result.alerts:
            if alert.active:
                if alert.alert_id in self._active or len(self._active) < MAX_ACTIVE_ALERTS:
                    self._active[alert.alert_id] = alert.flag
            else:
                self._active.pop(alert.alert_id, None)
            carriers.append(alert.source)
        flags = frozenset(self._active.values())
        for value in result.values:
            events.append(self._reading(value, flags))
        for source in carriers:
            if source is not None:
                events.append(self._reading(source, flags))
        if result.alerts and all(s is None for s in carriers):
            events.append(
                Reading(self.device_id, ALERT_CARRIER, None, "", flags=flags | {"alert_report"}, seq=self._seq)
            )
        return events

    def _reading(self, v: PcdValue, alarm_flags: frozenset[str]) -> Reading:
        label = f"{v.code}^{v.refid}"
        return Reading(self.device_id, label, v.value, v.unit, v.time, v.flags | alarm_flags, self._seq)
