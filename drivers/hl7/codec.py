"""HL7 v2 receiver codec: MLLP blocks (or bare messages) in, readings out, ACKs to send.

One codec per connection (TCP) or per serial port. Every message is answered in
the mode its MSH-15/16 ask for (see `pcd.ack_codes`); an accepted ORU^R01 yields
one reading per numeric OBX, labelled `code^REFID` from OBX-3 (the normalizer
takes the MDC term from the label itself). ORU^R40 alerts become device-alarm
flags (`alarm_<priority>_<phys|tech|advisory>_<event>_<source>`) carried by the
alarming metric's reading, or by an `MDC_EVT_ALARM` carrier reading without a
value when the source is a device, and by every later reading from this sender
until the alert ends, so the rule engine sees one consistent set. Messages that
are refused or in error are counted as bad frames with the reason; one `feed`
reports them in one bad_frame event (a flood of bad messages must not become a
flood of events on the alarm path).

What a row means (issue 17):
- MSH-11 T (training) or D (debugging): ACKed, counted in `training`, logged once
  per connection, and no reading is emitted: such values are never a patient's,
  so they reach neither the alarm engine nor the telemetry stream.
- OBX-11 C: the reading carries `correction` and, when this listener used the
  row it corrects, `corrects_origin:<origin>` (the gateway rewrites it as
  `corrects:<obs_id>`, the corrected observation's id, which a consumer matches).
  The corrected row is the latest one with the same sender (MSH-3, MSH-4), OBX-3
  code, OBX-4 containment and observation time (drivers/hl7/meaning.py).
- OBX-3 not in any table, or code and name disagreeing: `unknown_code` /
  `code_name_mismatch`, graded invalid by the family (no alarm from them).
- PID-3 / PV1-3: `patient:<id>` and `location:<unit^room^bed>`, compared by the
  gateway with the device's pairing (appliance/identity.py).

ACKs: enhanced mode with MSH-15 and MSH-16 both AL gets the commit ACK (CA) and
then the application ACK (AA); our control ids are `GW<boot prefix>.<n>`, unique
across restarts. Missing MSH-9 / MSH-10 and HL7 versions other than
`pcd.SUPPORTED_VERSIONS` are rejected (AR) with an ERR segment naming why.

A message resent with the same sender and MSH-10 (the sender's retry after a lost
ACK) is acknowledged again but not used twice.

Identity (docs/wire.md, "Identity"): every reading's `origin` is the message's
digest (`message_keys`: sender MSH-3/MSH-4, MSH-10 and everything after MSH, so a
re-stamped MSH-7 does not count) and its row, so the same message yields the same
observation ids on any connection, after a restart and on a serial port alike,
while a control id reused for other content yields new ones.

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

import itertools
import logging
import re
import secrets
from collections import deque
from collections.abc import Iterator
from typing import Final

from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.codec import CodecStats, drain
from drivers.hl7.meaning import CORRECTS_ORIGIN, row_identity, term_flag
from drivers.hl7.message import Hl7Error, Hl7Message, parse
from drivers.hl7.mllp import HEAD_BYTES, MAX_BLOCK_BYTES, MllpDecoder, Oversized, frame
from drivers.hl7.pcd import PcdResult, PcdValue, Verdict, ack_codes, ack_message, interpret
from drivers.hl7.seen import Seen, message_keys

__all__ = ["ALERT_CARRIER", "MAX_REMEMBERED", "Hl7Codec", "Seen", "message_keys"]

log = logging.getLogger(__name__)

ALERT_CARRIER: Final = "196616^MDC_EVT_ALARM"
MAX_ACTIVE_ALERTS: Final = 256  # per sender; a flood of never-ended alerts cannot grow without bound
# Above the segment bound (message.MAX_SEGMENTS): every row of a message has its own slot.
ROWS_PER_MESSAGE: Final = 1024
MAX_REMEMBERED: Final = 256  # ACK codes sent / responses read kept for the bench and tests (oldest go)
_ids: Final = itertools.count(1)
# Our ACKs' control ids (MSH-10): a random prefix per process start, then a counter,
# so an id is never reused after a restart (a sender matching ACKs by id, or an
# audit trail, could otherwise confuse two).
BOOT_PREFIX: Final = secrets.token_hex(6)
# A message boundary in unframed input: a segment break before MSH, or an MLLP frame byte.
_BARE_BOUNDARY: Final = re.compile(rb"[\r\n](?=MSH)|[\x0b\x1c]")
_NOT_SPACE: Final = re.compile(rb"[^ \t\r\n]")
_LOOKBEHIND: Final = 3  # "\rMS" at the end of a chunk may become a boundary with the next byte


def row_seq(message_seq: int, row: int) -> int:
    """A reading's sequence: its message's, then its row within the message, so two
    rows of one message (SpO2 from two channels at one time) never share an id."""
    return message_seq * ROWS_PER_MESSAGE + row


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
        self._texts: dict[str, str] = {}  # flag -> the sender's text for it (OBX-5 of the alert)
        # Shared across a listener's connections (see Seen), as is the message
        # sequence: readings of two connections never share a sequence number.
        self._seen = seen or Seen()
        self._sequence = sequence or itertools.count(1)
        self._bad_reasons: list[str] = []  # refusals in the current feed, reported as one event
        self._garbage_runs = 0
        self._mllp_bad_seen = 0
        self.duplicates = 0
        self.training = 0  # MSH-11 T / D messages: ACKed, never used as patient data
        self._seq = 0
        self._origin = ""  # the current message's digest (see module doc)

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
            keys = message_keys(f"{msg.msh.raw(3)}|{msg.msh.raw(4)}", msg.msh.raw(10), body)
            self._origin = keys[1].hex()  # the readings' origin: same message, same ids
            if not self._seen.first_time_keys(*keys):
                self.duplicates += 1
                return []
        if result.verdict.outcome != "accept":
            self._refused(f"{result.verdict.outcome} ({result.verdict.err_code}): {result.verdict.text}")
            return []
        self.stats.frames_ok += 1
        if result.processing_id != "P":
            return self._training(result.processing_id)
        self._seq = next(self._sequence)
        return self._readings(result)

    def _training(self, processing_id: str) -> list[DeviceEvent]:
        """A training (T) or debugging (D) message: acknowledged like any other, so the
        sender does not resend it, but its values are not a patient's and never reach
        the alarm engine or the telemetry stream. Counted; logged once per connection
        (a sender left in training mode would otherwise fill the log)."""
        self.training += 1
        if self.training == 1:
            log.warning(
                "%s: HL7 processing id %r (training/debugging): acknowledged, values not used", self.device_id,
                processing_id,
            )  # fmt: skip
        return []

    def _answer(self, msg: Hl7Message | None, verdict: Verdict) -> None:
        if self.unframed:  # nobody to answer: a file, or a port configured without MLLP
            return
        for code in ack_codes(msg, verdict):  # enhanced mode AL/AL: the commit ACK, then the application ACK
            ack = ack_message(msg, code, verdict, self._clock.now(), f"GW{BOOT_PREFIX}.{next(_ids)}", app=self._app)
            self._out += frame(ack)
            _remember(self.acks, code)

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
                    if alert.text:
                        self._texts[alert.flag] = alert.text
            else:
                self._active.pop(alert.alert_id, None)
            carriers.append(alert.source)
        flags = frozenset(self._active.values())
        self._texts = {f: t for f, t in self._texts.items() if f in flags}  # bounded by the active alerts
        texts = tuple(self._texts.items())
        sources = [s for s in carriers if s is not None]
        for row, value in enumerate([*result.values, *sources]):
            events.append(self._reading(value, flags | self._who(result), row, result.sender, texts))
        if result.alerts and not sources:
            seq = row_seq(self._seq, 0)
            carried = flags | self._who(result) | {"alert_report"}
            origin = f"{self._origin}.alert"
            events.append(
                Reading(self.device_id, ALERT_CARRIER, None, "", flags=carried, seq=seq, origin=origin, texts=texts)
            )
        return events

    @staticmethod
    def _who(result: PcdResult) -> frozenset[str]:
        """PID-3 / PV1-3 as flags (`patient:<id>`, `location:<unit^room^bed>`): the
        gateway compares them with its pairing and removes them (appliance/identity.py)."""
        claims = {f"patient:{pid}" for pid in result.patient_ids}
        if any(result.location):
            claims.add(f"location:{'^'.join(result.location)}")
        return frozenset(claims)

    def _reading(
        self, v: PcdValue, extra: frozenset[str], row: int, sender: str, texts: tuple[tuple[str, str], ...] = ()
    ) -> Reading:
        label = f"{v.code}^{v.refid}"
        seq = row_seq(self._seq, row)
        flags = v.flags | extra
        judged = term_flag(label)
        if judged is not None:
            flags |= {judged}
        origin = f"{self._origin}.{row}"
        identity = row_identity(sender, v.code, v.place, v.time)
        corrected = self._seen.originals.link(identity, origin, "correction" in v.flags)
        if corrected is not None:
            flags |= {f"{CORRECTS_ORIGIN}{corrected}"}
        return Reading(self.device_id, label, v.value, v.unit, v.time, flags, seq, origin, texts)
