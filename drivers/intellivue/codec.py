"""Philips IntelliVue Data Export session over MIB/RS-232: a sans-IO session codec.

Bytes in, events out, bytes to send drained with `data_to_send`; time comes from
an injected clock and advances only in `tick`, so every timer is tested without
waiting. The session is one state machine (enum + transition table):

    CLOSED --opened--> ASSOCIATING --accepted--> AWAIT_MDS --mds_create--> POLLING
    POLLING: extended polls for numerics and alerts every poll period; a single
             MDS poll as keep-alive when the monitor has been quiet for a while
    silence / abort / refusal / response timeout --> ASSOCIATING (re-association)
    shutdown --> RELEASING --released / timeout--> CLOSED

Poll replies are decoded in any state (a capture replayed by `bedside decode` has
no session of ours), but polls are only sent while POLLING. Losing the session
raises `session_lost` once per outage; the next association clears it.

Fact sheet: shared/protocols/intellivue-mib.md §5 (sequence, keep-alive practice).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from appliance.core.transitions import TransitionTable
from drivers.codec import CodecStats, drain
from drivers.intellivue import wire
from drivers.intellivue.data import Alert, Numeric, NumericDecoder, alerts_of, state_flags, ucum_unit
from drivers.intellivue.frame import FrameDecoder, encode_frame

__all__ = ["TRANSITIONS", "IntelliVueCodec", "IntelliVueTiming", "SessionState", "Trigger"]


class SessionState(enum.Enum):
    CLOSED = "closed"
    ASSOCIATING = "associating"
    AWAIT_MDS = "await_mds"
    POLLING = "polling"
    RELEASING = "releasing"


class Trigger(enum.Enum):
    OPENED = "opened"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    MDS_CREATE = "mds_create"
    TIMEOUT = "timeout"  # no answer to an association request / no MDS create
    SILENCE = "silence"  # no frame at all for silence_timeout_s
    ABORTED = "aborted"
    RELEASE_REQUESTED = "release_requested"  # the monitor ends the association
    SHUTDOWN = "shutdown"
    RELEASED = "released"
    LOST = "lost"  # the port went away


S, T = SessionState, Trigger
_ANY_OPEN: Final = (S.ASSOCIATING, S.AWAIT_MDS, S.POLLING)
_MOVES: Final[dict[tuple[SessionState, Trigger], SessionState]] = {
    (S.CLOSED, T.OPENED): S.ASSOCIATING,
    (S.ASSOCIATING, T.ACCEPTED): S.AWAIT_MDS,
    (S.ASSOCIATING, T.MDS_CREATE): S.POLLING,  # the accept was lost on the line
    (S.AWAIT_MDS, T.MDS_CREATE): S.POLLING,
    (S.POLLING, T.MDS_CREATE): S.POLLING,  # the monitor re-announces: answer again
    (S.RELEASING, T.RELEASED): S.CLOSED,
    (S.RELEASING, T.TIMEOUT): S.CLOSED,
    (S.RELEASING, T.LOST): S.CLOSED,
    **{(s, t): S.ASSOCIATING for s in _ANY_OPEN for t in (T.TIMEOUT, T.SILENCE, T.ABORTED, T.REFUSED)},
    **{(s, T.RELEASE_REQUESTED): S.ASSOCIATING for s in _ANY_OPEN},
    **{(s, T.SHUTDOWN): S.RELEASING for s in _ANY_OPEN},
    **{(s, T.LOST): S.CLOSED for s in _ANY_OPEN},
}
TRANSITIONS: Final = TransitionTable("IntelliVue session", _MOVES)
_SESSION_LOSS: Final = frozenset({T.TIMEOUT, T.SILENCE, T.ABORTED, T.REFUSED, T.RELEASE_REQUESTED})


@dataclass(frozen=True, slots=True)
class IntelliVueTiming:
    poll_period_s: float = 1.0  # numerics update once a second on the monitor
    keepalive_after_s: float = 3.0  # quiet this long while polling: send an MDS poll
    silence_timeout_s: float = 10.0  # brarm's reset rule: no frame this long = gone
    assoc_retry_s: float = 5.0  # resend the association request
    mds_timeout_s: float = 10.0  # accepted but no MDS create event
    refused_retry_s: float = 10.0  # a refusing monitor is not hammered
    release_timeout_s: float = 2.0
    tick_s: float = 0.1


MAX_PENDING_OUT: Final = 16 * 1024  # bytes queued for the port; older polls are dropped first


class IntelliVueCodec:
    def __init__(self, device_id: str, clock: Clock, timing: IntelliVueTiming | None = None) -> None:
        self.device_id = device_id
        self.timing = timing or IntelliVueTiming()
        self.tick_s = self.timing.tick_s
        self.stats = CodecStats()
        self.state = SessionState.CLOSED
        self.transitions: list[tuple[SessionState, Trigger, SessionState]] = []
        self.polls_sent = 0
        self.associations = 0
        self._clock = clock
        self._frames = FrameDecoder()
        self._numerics = NumericDecoder()
        self._out = bytearray()
        self._invoke_id = 0
        self._poll_number = 0
        self._entered_s = 0.0
        self._last_rx_s = 0.0
        self._last_poll_s = float("-inf")
        self._last_keepalive_s = float("-inf")
        self._retry_after_s = 0.0
        self._poll_period_s = self.timing.poll_period_s
        self._lost_reported = False
        self._alerts: list[Alert] = []
        self._seq = 0

    # -- the link's side ---------------------------------------------------------
    def data_to_send(self) -> bytes:
        return drain(self._out)

    def opened(self) -> list[DeviceEvent]:
        return self._fire(Trigger.OPENED)

    def closing(self) -> None:
        self._fire(Trigger.SHUTDOWN)

    def lost(self) -> list[DeviceEvent]:
        return self._fire(Trigger.LOST)

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        events: list[DeviceEvent] = []
        bad_before = self._frames.stats.frames_bad
        payloads = self._frames.feed(data)
        if self._frames.stats.frames_bad != bad_before:
            events.append(self._bad(self._frames.stats.frames_bad - bad_before, self._frames.last_error))
        if payloads:
            self._last_rx_s = self._clock.monotonic()
        for payload in payloads:
            try:
                message = wire.parse_message(payload)
                events += self._message(message)
            except wire.MessageError as exc:
                events.append(self._bad(1, f"undecodable message: {exc}"))
                continue
            self.stats.frames_ok += 1
        return events

    def tick(self) -> list[DeviceEvent]:
        now = self._clock.monotonic()
        t = self.timing
        since_rx, in_state = now - self._last_rx_s, now - self._entered_s
        if self.state is S.ASSOCIATING:
            if now >= self._retry_after_s:
                self._send_association(now)
            return []
        if self.state is S.AWAIT_MDS and in_state > t.mds_timeout_s:
            return self._fire(Trigger.TIMEOUT, "accepted but no MDS create event")
        if self.state is S.RELEASING and in_state > t.release_timeout_s:
            return self._fire(Trigger.TIMEOUT)
        if self.state is not S.POLLING:
            return []
        if since_rx > t.silence_timeout_s:
            return self._fire(Trigger.SILENCE, f"no frame from the monitor for {t.silence_timeout_s:g} s")
        if now - self._last_poll_s >= self._poll_period_s:
            self._last_poll_s = now
            self._send(wire.extended_poll(self._next_invoke(), self._next_poll(), wire.NOM_MOC_VMO_METRIC_NU))
            self._send(wire.extended_poll(self._next_invoke(), self._next_poll(), wire.NOM_MOC_VMO_AL_MON))
            self.polls_sent += 2
        if since_rx > t.keepalive_after_s and now - self._last_keepalive_s >= t.keepalive_after_s:
            self._last_keepalive_s = now
            self._send(wire.single_poll(self._next_invoke(), self._next_poll(), wire.NOM_MOC_VMS_MDS))
        return []

    # -- state machine -------------------------------------------------------------
    def _fire(self, trigger: Trigger, detail: str = "") -> list[DeviceEvent]:
        if not TRANSITIONS.accepts(self.state, trigger):
            return []  # not meaningful in this state (a stray frame, a late reply)
        target = TRANSITIONS.next(self.state, trigger)
        source, now = self.state, self._clock.monotonic()
        self.transitions.append((source, trigger, target))
        self.state, self._entered_s = target, now
        events: list[DeviceEvent] = []
        if trigger in _SESSION_LOSS and not self._lost_reported:
            self._lost_reported = True
            why = detail or f"{trigger.value} while {source.value}"
            events.append(TechnicalEvent(self.device_id, "session_lost", detail=why))
        if target is S.ASSOCIATING:
            self._out.clear()  # polls queued for the old association are moot
            if trigger is T.RELEASE_REQUESTED:
                self._send(wire.release_response())
            delay = self.timing.refused_retry_s if trigger is T.REFUSED else 0.0
            self._retry_after_s = now + delay
            if delay == 0.0:
                self._send_association(now)
        elif target is S.POLLING:
            self._last_rx_s = now
            self._last_poll_s = float("-inf")
            if source is not S.POLLING:
                self.associations += 1
                if self._lost_reported:
                    self._lost_reported = False
                    events.append(TechnicalEvent(self.device_id, "session_lost", active=False))
        elif target is S.RELEASING:
            self._out.clear()  # queued polls are moot; the release must go out now
            self._send(wire.release_request())
        elif target is S.CLOSED:
            self._out.clear()
        return events

    def _send_association(self, now: float) -> None:
        self._numerics.reset()
        self._alerts = []
        self._send(wire.association_request())
        self._retry_after_s = now + self.timing.assoc_retry_s
        self._last_rx_s = now

    def _send(self, user_data: bytes) -> None:
        frame = encode_frame(user_data)
        if len(self._out) + len(frame) > MAX_PENDING_OUT:
            self._out.clear()  # the port is not draining: stale polls are worthless
        self._out += frame

    def _next_invoke(self) -> int:
        self._invoke_id = (self._invoke_id + 1) & 0xFFFF
        return self._invoke_id

    def _next_poll(self) -> int:
        self._poll_number = (self._poll_number + 1) & 0xFFFF
        return self._poll_number

    def _bad(self, count: int, detail: str) -> TechnicalEvent:
        self.stats.frames_bad += count
        return TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=detail)

    # -- messages ------------------------------------------------------------------
    def _message(self, message: wire.Message) -> list[DeviceEvent]:
        match message:
            case wire.AssocAccept(min_poll_period_s=period):
                if period is not None:
                    self._poll_period_s = max(self.timing.poll_period_s, period)
                return self._fire(Trigger.ACCEPTED)
            case wire.AssocRefuse():
                return self._fire(Trigger.REFUSED, "association refused by the monitor")
            case wire.MdsCreate():
                self._numerics.clock.anchor(message.attributes)
                events = self._fire(Trigger.MDS_CREATE)
                if self.state is S.POLLING:
                    self._send(wire.mds_create_result(message.invoke_id, message.managed_object, message.event_time))
                return events
            case wire.PollReply():
                return self._poll_reply(message)
            case wire.Abort():
                return self._fire(Trigger.ABORTED, "monitor aborted the association")
            case wire.ReleaseRequest():
                return self._fire(Trigger.RELEASE_REQUESTED, "monitor released the association")
            case wire.ReleaseResponse():
                return self._fire(Trigger.RELEASED)
            case _:
                return []  # GET/SET results, remote errors: nothing to act on

    def _poll_reply(self, reply: wire.PollReply) -> list[DeviceEvent]:
        if reply.obj_code == wire.NOM_MOC_VMO_AL_MON:
            alerts = alerts_of(reply)
            if alerts is not None:
                self._alerts = alerts
            return []
        numerics = self._numerics.numerics(reply)
        if not numerics:
            return []
        self._seq += 1
        alarm_flags = frozenset(a.flag for a in self._alerts)
        texts = tuple((a.flag, a.text) for a in self._alerts if a.text)
        return [self._reading(n, alarm_flags, texts) for n in numerics]

    def _reading(self, n: Numeric, alarm_flags: frozenset[str], texts: tuple[tuple[str, str], ...] = ()) -> Reading:
        flags = state_flags(n.state) | alarm_flags
        if n.special is not None:
            flags |= {f"float_{n.special}", "missing"}
        return Reading(
            self.device_id,
            f"0x{n.physio_id:04X}",
            n.value,
            ucum_unit(n.unit_code),
            device_time=n.device_time,
            flags=flags,
            seq=self._seq,
            texts=texts,
        )
