"""HL7 v2 receiver codec: MLLP blocks (or bare messages) in, readings out, ACKs to send.

One codec per connection (TCP) or per serial port. Every message is answered in
the mode its MSH-15/16 ask for (see `pcd.build_ack`); an accepted ORU^R01 yields
one reading per numeric OBX, labelled `code^REFID` from OBX-3 (the normalizer
takes the MDC term from the label itself). ORU^R40 alerts become device-alarm
flags (`alarm_<priority>_<phys|tech|advisory>_<event>_<source>`) carried by the
alarming metric's reading, or by an `MDC_EVT_ALARM` carrier reading without a
value when the source is a device, and by every later reading from this sender
until the alert ends, so the rule engine sees one consistent set. Messages that
are refused or in error are counted as bad frames with the reason; one `feed`
reports them in one bad_frame event (a flood of bad messages must not become a
flood of events on the alarm path).

A message resent with the same sender and MSH-10 (the sender's retry after a lost
ACK) is acknowledged again but not used twice.

Framing is configured, never guessed (issue #14): by default the input is MLLP,
and bytes outside a block are skipped and counted. With `unframed=True` (a `.hl7`
file for `bedside decode`, or a serial port configured `hl7_unframed`) messages
are split at each MSH at a segment start and at MLLP frame bytes, so a file may
be framed or bare; `finish()` flushes the last one. Unframed input is never
acknowledged, is scanned once (only new bytes), and a message over the bound is
dropped and counted.

Bounds (all refusals name the bound): block / message size `max_message_bytes`,
segments (`message.MAX_SEGMENTS`), OBX-4 depth (`pcd.MAX_CONTAINMENT_DEPTH`).
`max_messages_per_feed` caps the messages handled in one `feed`; the rest wait
in `backlog` and are handled by the next `feed` (the listener calls `feed(b"")`
in the next loop turn), so one 64 KiB read of tiny blocks cannot hold the loop.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Final

from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.codec import CodecStats, drain
from drivers.hl7.message import Hl7Error, Hl7Message, parse
from drivers.hl7.mllp import HEAD_BYTES, MAX_BLOCK_BYTES, MllpDecoder, Oversized, frame
from drivers.hl7.pcd import PcdResult, PcdValue, Verdict, build_ack, interpret

__all__ = ["ALERT_CARRIER", "MAX_REMEMBERED", "Hl7Codec", "Seen"]

log = logging.getLogger(__name__)

ALERT_CARRIER: Final = "196616^MDC_EVT_ALARM"
MAX_SEEN_IDS: Final = 1024  # control ids remembered to spot a sender's resend of a message we took
MAX_ACTIVE_ALERTS: Final = 256  # per sender; a flood of never-ended alerts cannot grow without bound
# Above the segment bound (message.MAX_SEGMENTS): every row of a message has its own slot.
ROWS_PER_MESSAGE: Final = 1024
MAX_REMEMBERED: Final = 256  # ACK codes sent / responses read kept for the bench and tests (oldest go)
_ids: Final = itertools.count(1)
# A message boundary in unframed input: a segment break before MSH, or an MLLP frame byte.
_BARE_BOUNDARY: Final = re.compile(rb"[\r\n](?=MSH)|[\x0b\x1c]")
_NOT_SPACE: Final = re.compile(rb"[^ \t\r\n]")
_LOOKBEHIND: Final = 3  # "\rMS" at the end of a chunk may become a boundary with the next byte


def row_seq(message_seq: int, row: int) -> int:
    """A reading's sequence: its message's, then its row within the message, so two
    rows of one message (SpO2 from two channels at one time) never share an id."""
    return message_seq * ROWS_PER_MESSAGE + row


class Seen:
    """Messages already used, by sender (MSH-3, MSH-4), control id (MSH-10) and content.

    Shared by every connection of one listener: a sender whose ACK was lost may
    resend on a new connection, and its resend must be used once. A control id
    reused for different content (a sender with a fixed or wrapping counter) is a
    new message, never silently dropped; content seen before under that id (A, B,
    A) is a resend. Only digests are kept (a hostile 60 KB MSH-10 costs 16 bytes),
    bounded: the oldest go first. Segment breaks are normalised (CR, LF, CR LF).
    """

    def __init__(self, max_entries: int = MAX_SEEN_IDS) -> None:
        self._messages: OrderedDict[bytes, None] = OrderedDict()
        self._ids: OrderedDict[bytes, None] = OrderedDict()
        self._max = max_entries
        self.resends = 0
        self.reused_ids = 0

    def first_time(self, sender: str, control_id: str, body: bytes) -> bool:
        ident = hashlib.blake2b(f"{sender}\x00{control_id}".encode(), digest_size=16)
        id_key = ident.digest()
        ident.update(b"\x00" + body.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip())
        message_key = ident.digest()
        if message_key in self._messages:
            self._messages.move_to_end(message_key)
            self.resends += 1
            return False
        if id_key in self._ids:
            self.reused_ids += 1
        for table, key in ((self._messages, message_key), (self._ids, id_key)):
            table[key] = None
            table.move_to_end(key)
            if len(table) > self._max:
                table.popitem(last=False)
        return True


def _remember(items: list[str], item: str) -> None:
    items.append(item)
    if len(items) > 2 * MAX_REMEMBERED:  # trimmed in halves: amortised O(1) per message
        del items[:-MAX_REMEMBERED]


class Hl7Codec:
    def __init__(
        self,
        device_id: str,
        clock: Clock,
        app: str = "BEDSIDE_GW",
        *,
        unframed: bool = False,
        max_message_bytes: int = MAX_BLOCK_BYTES,
        max_messages_per_feed: int | None = None,
        seen: Seen | None = None,
        sequence: Iterator[int] | None = None,
    ) -> None:
        self.device_id = device_id
        self.unframed = unframed
        self.stats = CodecStats()
        self.acks: list[str] = []  # MSA-1 codes sent, for the bench and tests (last MAX_REMEMBERED..2x)
        self.responses: list[str] = []  # ACKs received (a sender's own ACK to our ACK is a protocol error)
        self._clock = clock
        self._app = app
        self._max_bytes = max_message_bytes
        self._per_feed = max_messages_per_feed
        self._mllp = MllpDecoder(max_message_bytes)
        self._backlog: deque[bytes | Oversized] = deque()
        self._bare = bytearray()
        self._bare_scan = 0  # unframed: where the boundary search resumes
        self._bare_dropping = False  # unframed: the current message went over the bound
        self._out = bytearray()
        self._active: dict[str, str] = {}  # alert id -> flag
        # Shared across a listener's connections (see Seen), as is the message
        # sequence: readings of two connections never share a sequence number.
        self._seen = seen or Seen()
        self._sequence = sequence or itertools.count(1)
        self._bad_reasons: list[str] = []  # refusals in the current feed, reported as one event
        self._garbage_runs = 0
        self._mllp_bad_seen = 0
        self.duplicates = 0
        self._seq = 0

    @property
    def backlog(self) -> int:
        """Complete messages read but not yet handled (see `max_messages_per_feed`)."""
        return len(self._backlog)

    @property
    def in_message(self) -> bool:
        """A message has begun and not ended: the listener's message deadline runs."""
        return self._mllp.in_block if not self.unframed else _NOT_SPACE.search(self._bare) is not None

    def data_to_send(self) -> bytes:
        return drain(self._out)

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        self._bad_reasons = []
        if self.unframed:
            self._backlog.extend(self._split_bare(data))
        else:
            self._backlog.extend(self._mllp.feed(data))
            self._count_mllp_errors()
        events: list[DeviceEvent] = []
        handled = 0
        while self._backlog and (self._per_feed is None or handled < self._per_feed):
            events += self._one(self._backlog.popleft())
            handled += 1
        return events + self._bad_event()

    def finish(self) -> list[DeviceEvent]:
        """End of input (a file): the last bare message has no MSH after it."""
        self._bad_reasons = []
        events: list[DeviceEvent] = []
        if self.unframed and not self._bare_dropping and self._bare.strip():
            self._backlog.append(bytes(self._bare))
        self._bare.clear()
        self._bare_scan, self._bare_dropping = 0, False
        while self._backlog:
            events += self._one(self._backlog.popleft())
        return events + self._bad_event()

    # -- framing -----------------------------------------------------------------------
    def _count_mllp_errors(self) -> None:
        stats = self._mllp.stats
        if stats.blocks_bad != self._mllp_bad_seen:
            self._refused(self._mllp.last_error, stats.blocks_bad - self._mllp_bad_seen)
            self._mllp_bad_seen = stats.blocks_bad
        if stats.garbage_runs != self._garbage_runs:
            self._refused("bytes outside an MLLP block (no VT) skipped", stats.garbage_runs - self._garbage_runs)
            self._garbage_runs = stats.garbage_runs

    def _split_bare(self, data: bytes) -> list[bytes | Oversized]:
        buf = self._bare
        buf += data
        out: list[bytes | Oversized] = []
        start = 0
        pos = self._bare_scan
        while (match := _BARE_BOUNDARY.search(buf, pos)) is not None:
            at = match.start()
            end = at + 1 if buf[at] in b"\r\n" else at  # the segment break belongs to the message
            if self._bare_dropping:
                self._bare_dropping = False
            elif end - start > self._max_bytes:  # whole, but over the bound: as if dropped on the way
                out.append(self._too_long(buf, start))
            elif buf[start:end].strip():
                out.append(bytes(buf[start:end]))
            start = pos = at + 1
        pending = len(buf) - start
        if pending > self._max_bytes or (self._bare_dropping and pending > _LOOKBEHIND):
            if not self._bare_dropping:
                self._bare_dropping = True
                out.append(self._too_long(buf, start))
            start = len(buf) - _LOOKBEHIND  # keep only what may still start a boundary
        del buf[:start]
        self._bare_scan = max(0, len(buf) - _LOOKBEHIND)
        return out

    def _too_long(self, buf: bytearray, start: int) -> Oversized:
        head = bytes(buf[start : start + min(HEAD_BYTES, self._max_bytes)])
        return Oversized(head, f"message longer than {self._max_bytes} bytes (bound)")

    # -- one message -------------------------------------------------------------------
    def _one(self, block: bytes | Oversized) -> list[DeviceEvent]:
        try:
            if isinstance(block, Oversized):
                return self._oversized(block)
            return self._message(block)
        except Exception as exc:  # one message must never end the connection (or the port)
            log.warning("%s: HL7 message not handled: %s: %s", self.device_id, type(exc).__name__, exc)
            self._answer(None, Verdict("reject", 207, "application internal error"))
            self._refused(f"reject (207): cannot handle message: {type(exc).__name__}")
            return []

    @staticmethod
    def _msh_only(block: bytes) -> Hl7Message | None:
        """The MSH of a message refused as a whole: its sender, control id and ACK modes."""
        head = block[:HEAD_BYTES].replace(b"\n", b"\r").split(b"\r", 1)[0]
        try:
            return parse(head)
        except Hl7Error:
            return None

    def _oversized(self, block: Oversized) -> list[DeviceEvent]:
        self._answer(self._msh_only(block.head), Verdict("reject", 100, block.reason))
        self._refused(f"reject (100): {block.reason}")
        return []

    def _message(self, block: bytes) -> list[DeviceEvent]:
        msg: Hl7Message | None
        try:
            msg = parse(block)
            result = interpret(msg)
        except Hl7Error as exc:
            msg, result = self._msh_only(block), PcdResult(Verdict("reject", 100, str(exc)))
        if result.is_response:
            _remember(self.responses, result.verdict.text)  # an ACK sent to us: read, never answered
            return []
        self._answer(msg, result.verdict)
        if result.verdict.outcome == "accept" and msg is not None:
            # The content after MSH decides: a resend (our ACK was lost) is ACKed
            # again and used once, even when the sender re-stamps MSH-7.
            body = block[min((i for i in (block.find(b"\r"), block.find(b"\n")) if i >= 0), default=0) :]
            if not self._seen.first_time(f"{msg.msh.raw(3)}|{msg.msh.raw(4)}", msg.msh.raw(10), body):
                self.duplicates += 1
                return []
        if result.verdict.outcome != "accept":
            self._refused(f"{result.verdict.outcome} ({result.verdict.err_code}): {result.verdict.text}")
            return []
        self.stats.frames_ok += 1
        self._seq = next(self._sequence)
        return self._readings(result)

    def _answer(self, msg: Hl7Message | None, verdict: Verdict) -> None:
        if self.unframed:  # nobody to answer: a file, or a port configured without MLLP
            return
        ack = build_ack(msg, verdict, self._clock.now(), f"GW{next(_ids)}", self._app)
        if ack is not None:
            self._out += frame(ack)
            _remember(self.acks, ack.split(b"\rMSA|", 1)[1][:2].decode())

    def _refused(self, reason: str, count: int = 1) -> None:
        self.stats.frames_bad += count
        self._bad_reasons.append(reason if count == 1 else f"{reason} (x{count})")

    def _bad_event(self) -> list[DeviceEvent]:
        reasons, self._bad_reasons = self._bad_reasons, []
        if not reasons:
            return []
        detail = reasons[0] if len(reasons) == 1 else f"{reasons[0]} (and {len(reasons) - 1} more)"
        return [TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail)]

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
        sources = [s for s in carriers if s is not None]
        for row, value in enumerate([*result.values, *sources]):
            events.append(self._reading(value, flags, row))
        if result.alerts and not sources:
            seq = row_seq(self._seq, 0)
            events.append(Reading(self.device_id, ALERT_CARRIER, None, "", flags=flags | {"alert_report"}, seq=seq))
        return events

    def _reading(self, v: PcdValue, alarm_flags: frozenset[str], row: int) -> Reading:
        label = f"{v.code}^{v.refid}"
        seq = row_seq(self._seq, row)
        return Reading(self.device_id, label, v.value, v.unit, v.time, v.flags | alarm_flags, seq)
