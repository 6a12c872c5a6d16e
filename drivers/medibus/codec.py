"""Dräger MEDIBUS session (the gateway is the "PC"): a sans-IO session codec.

One state machine (enum + table): CLOSED --opened--> INITIALIZING (ICC every 3 s
until an ICC response or the device's own ICC) --> ACTIVE (poll measured data and
alarms of both codepages, the clock now and then; NOP after 2 s idle) --3 s
without a slow byte--> INITIALIZING (re-ICC, configuration is lost anyway);
shutdown sends STOP. Every device command is answered (ICC, NOP, device
identification with a full ID, unknown ones empty, corrupt ones with NAK), even
while we wait for a response of our own. DC1 suspends our transmission until DC3
(the reverse of XON/XOFF, so the OS-level XON/XOFF must stay off); no DC3 within
3 s re-initialises. CAN drops the message in progress. One request outstanding at
a time, 10 s response deadline.

Fact sheet: shared/protocols/medibus.md §3-§5.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from appliance.core.clock import Clock
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from appliance.core.transitions import TransitionTable
from drivers.codec import CodecStats, drain
from drivers.medibus.data import (
    CP1_UNITS,
    DeviceIdentity,
    alarm_priority,
    parse_alarms,
    parse_datetime,
    parse_identity,
    parse_measured,
)
from drivers.medibus.family import MEDIBUS_PROFILES as PROFILES
from drivers.medibus.frame import NAK, Control, MedibusParser, Message, command, response

__all__ = ["PC_IDENTITY", "PROFILES", "TRANSITIONS", "MedibusCodec", "MedibusState", "MedibusTiming"]

NOP, ICC, STOP, DEV_ID, TIME_CHANGED = 0x30, 0x51, 0x55, 0x52, 0x49
CP1_DATA, CP1_ALARMS, CP2_DATA, CP2_ALARMS, DATE_TIME = 0x24, 0x27, 0x2B, 0x2E, 0x28
PC_IDENTITY: Final = b"0161'Bedside Gateway'01.00:04.03"
# PROFILES (drivers/medibus/family.py): port profile per model (fact sheet §1), variant -> (baud, parity).


class MedibusState(enum.Enum):
    CLOSED = "closed"
    INITIALIZING = "initializing"
    ACTIVE = "active"
    STOPPED = "stopped"


class Trigger(enum.Enum):
    OPENED = "opened"
    ICC_RESPONSE = "icc_response"
    ICC_RECEIVED = "icc_received"
    LINK_TIMEOUT = "link_timeout"
    SUSPEND_TIMEOUT = "suspend_timeout"
    LOST = "lost"
    SHUTDOWN = "shutdown"


M, T = MedibusState, Trigger
_MOVES: Final[dict[tuple[MedibusState, Trigger], MedibusState]] = {
    (M.CLOSED, T.OPENED): M.INITIALIZING,
    (M.INITIALIZING, T.ICC_RESPONSE): M.ACTIVE,
    (M.INITIALIZING, T.ICC_RECEIVED): M.ACTIVE,
    (M.ACTIVE, T.ICC_RECEIVED): M.ACTIVE,  # the device re-initialised: our configuration is gone
    (M.ACTIVE, T.LINK_TIMEOUT): M.INITIALIZING,
    (M.ACTIVE, T.SUSPEND_TIMEOUT): M.INITIALIZING,
    (M.INITIALIZING, T.LOST): M.CLOSED,
    (M.ACTIVE, T.LOST): M.CLOSED,
    (M.INITIALIZING, T.SHUTDOWN): M.STOPPED,
    (M.ACTIVE, T.SHUTDOWN): M.STOPPED,
}
TRANSITIONS: Final = TransitionTable("Medibus session", _MOVES)


@dataclass(frozen=True, slots=True)
class MedibusTiming:
    poll_period_s: float = 2.0
    clock_every_s: float = 60.0
    icc_retry_s: float = 3.0
    link_timeout_s: float = 3.0  # no slow byte this long: link broken
    nop_after_s: float = 2.0  # idle this long: send NOP
    response_timeout_s: float = 10.0
    resume_within_s: float = 3.0  # DC1 without DC3 this long: re-initialise
    tick_s: float = 0.1


class MedibusCodec:
    def __init__(self, device_id: str, clock: Clock, timing: MedibusTiming | None = None) -> None:
        self.device_id = device_id
        self.timing = timing or MedibusTiming()
        self.tick_s = self.timing.tick_s
        self.stats = CodecStats()
        self.state = MedibusState.CLOSED
        self.transitions: list[tuple[MedibusState, Trigger, MedibusState]] = []
        self.identity: DeviceIdentity | None = None
        self.answered = 0  # device commands answered
        self.timeouts = 0
        self._clock = clock
        self._parser = MedibusParser()
        self._out = bytearray()
        self._held = bytearray()  # written while suspended by DC1
        self._suspended_at: float | None = None
        self._queue: deque[int] = deque()
        self._outstanding: tuple[int, float] | None = None
        self._last_slow_bytes = 0
        self._last_rx_s = self._last_tx_s = self._last_icc_s = 0.0
        self._next_poll_s = self._next_clock_s = 0.0
        self._alarm_flags: dict[int, frozenset[str]] = {1: frozenset(), 2: frozenset()}
        self._alarm_texts: dict[int, tuple[tuple[str, str], ...]] = {1: (), 2: ()}
        self._device_clock: tuple[datetime, float] | None = None
        self._lost_reported = False
        self._seq = 0

    # -- link side -------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        return drain(self._out)

    def opened(self) -> list[DeviceEvent]:
        return self._fire(Trigger.OPENED)

    def lost(self) -> list[DeviceEvent]:
        return self._fire(Trigger.LOST)

    def closing(self) -> None:
        self._fire(Trigger.SHUTDOWN)

    def feed(self, data: bytes) -> list[DeviceEvent]:
        self.stats.bytes_in += len(data)
        bad_before = self._parser.stats.messages_bad
        items = self._parser.feed(data)
        if self._parser.stats.slow_bytes != self._last_slow_bytes:
            self._last_slow_bytes = self._parser.stats.slow_bytes
            self._last_rx_s = self._clock.monotonic()  # realtime bytes do not keep the link alive
        events: list[DeviceEvent] = []
        for item in items:
            if isinstance(item, Control):
                events += self._control(item)
            else:
                self.stats.frames_ok += 1
                events += self._message(item)
        while self._parser.bad_commands:
            self._parser.bad_commands.pop()
            self._send(response(NAK))
        bad = self._parser.stats.messages_bad - bad_before
        if bad:
            self.stats.frames_bad += bad
            events.append(
                TechnicalEvent(self.device_id, "bad_frame", count=self.stats.frames_bad, detail=self._parser.last_error)
            )
        return events

    def tick(self) -> list[DeviceEvent]:
        now, t = self._clock.monotonic(), self.timing
        if self._suspended_at is not None and now - self._suspended_at > t.resume_within_s:
            return self._fire(Trigger.SUSPEND_TIMEOUT, "DC1 (suspend) without DC3 within 3 s")
        if self.state is M.INITIALIZING:
            if now - self._last_icc_s >= t.icc_retry_s:
                self._send_icc(now)
            return []
        if self.state is not M.ACTIVE:
            return []
        if now - self._last_rx_s > t.link_timeout_s:
            return self._fire(Trigger.LINK_TIMEOUT, f"no byte from the device for {t.link_timeout_s:g} s")
        if self._outstanding is not None and now - self._outstanding[1] > t.response_timeout_s:
            self.timeouts += 1
            self._outstanding = None
        if now >= self._next_poll_s:
            self._next_poll_s = now + t.poll_period_s
            self._queue.extend((CP1_DATA, CP1_ALARMS, CP2_DATA, CP2_ALARMS))
            if now >= self._next_clock_s:
                self._next_clock_s = now + t.clock_every_s
                self._queue.append(DATE_TIME)
        if self._outstanding is None and self._queue and self._suspended_at is None:
            code = self._queue.popleft()
            self._outstanding = (code, now)
            self._send(command(code))
        elif self._outstanding is None and now - self._last_tx_s >= t.nop_after_s:
            self._outstanding = (NOP, now)
            self._send(command(NOP))
        return []

    # -- state machine -------------------------------------------------------------
    def _fire(self, trigger: Trigger, detail: str = "") -> list[DeviceEvent]:
        if not TRANSITIONS.accepts(self.state, trigger):
            return []  # not meaningful in this state (a late reply, a repeated timeout)
        target = TRANSITIONS.next(self.state, trigger)
        source, now = self.state, self._clock.monotonic()
        self.transitions.append((source, trigger, target))
        self.state = target
        events: list[DeviceEvent] = []
        if trigger in (T.LINK_TIMEOUT, T.SUSPEND_TIMEOUT) and not self._lost_reported:
            self._lost_reported = True
            events.append(TechnicalEvent(self.device_id, "session_lost", detail=detail))
        self._queue.clear()
        self._outstanding = None
        if target is M.INITIALIZING:
            self._suspended_at = None
            self._out.clear()
            self._held.clear()
            self._send_icc(now)
        elif target is M.ACTIVE:
            self._last_rx_s = now
            self._next_poll_s = self._next_clock_s = now
            self._queue.append(DEV_ID)
            if self._lost_reported:
                self._lost_reported = False
                events.append(TechnicalEvent(self.device_id, "session_lost", active=False))
        elif target is M.STOPPED:
            self._out.clear()
            self._held.clear()
            self._suspended_at = None
            self._send(command(STOP))
        elif target is M.CLOSED:
            self._out.clear()
            self._held.clear()
        return events

    def _send_icc(self, now: float) -> None:
        self._last_icc_s = now
        self._send(command(ICC))

    def _send(self, data: bytes) -> None:
        self._last_tx_s = self._clock.monotonic()
        if self._suspended_at is not None:
            self._held += data
        else:
            self._out += data

    def _control(self, item: Control) -> list[DeviceEvent]:
        if item.what == "suspend":
            self._suspended_at = self._clock.monotonic()
        elif item.what == "resume":
            self._suspended_at = None
            self._out += self._held
            self._held.clear()
        elif self._outstanding is not None:  # cancel: the device dropped its reply; ask again later
            self._queue.appendleft(self._outstanding[0])
            self._outstanding = None
        return []

    # -- messages ------------------------------------------------------------------
    def _message(self, msg: Message) -> list[DeviceEvent]:
        if msg.kind == "command":
            return self._device_command(msg)
        if msg.code == ICC:
            return self._fire(Trigger.ICC_RESPONSE)
        if self._outstanding is not None and msg.code in (self._outstanding[0], NAK):
            self._outstanding = None
        if msg.code in (CP1_DATA, CP2_DATA):
            return self._measured(msg)
        if msg.code in (CP1_ALARMS, CP2_ALARMS):
            codepage = 1 if msg.code == CP1_ALARMS else 2
            alarms = {
                f"alarm_{alarm_priority(a.priority)}_cp{codepage}_{a.code.lower()}": a.phrase
                for a in parse_alarms(msg.data, codepage)
            }
            self._alarm_flags[codepage] = frozenset(alarms)
            self._alarm_texts[codepage] = tuple((flag, text) for flag, text in alarms.items() if text)
        elif msg.code == DATE_TIME:
            when = parse_datetime(msg.data)
            if when is not None:
                self._device_clock = (when, self._clock.monotonic())
        elif msg.code == DEV_ID:
            self.identity = parse_identity(msg.data)
        return []

    def _device_command(self, msg: Message) -> list[DeviceEvent]:
        self.answered += 1
        if msg.code == ICC:
            self._send(response(ICC))
            return self._fire(Trigger.ICC_RECEIVED)
        if msg.code == DEV_ID:
            self._send(response(DEV_ID, PC_IDENTITY))  # some devices reject an empty ID
        else:
            self._send(response(msg.code))  # NOP, time changed, unknown: an empty response
            if msg.code == TIME_CHANGED and self.state is M.ACTIVE:
                self._queue.append(DATE_TIME)
        return []

    def _measured(self, msg: Message) -> list[DeviceEvent]:
        codepage = 1 if msg.code == CP1_DATA else 2
        flags = self._alarm_flags[1] | self._alarm_flags[2]
        when = None
        if self._device_clock is not None:
            base, at = self._device_clock
            when = base + timedelta(seconds=self._clock.monotonic() - at)
        self._seq += 1
        return [
            Reading(
                self.device_id,
                f"CP{codepage}_{code}",
                value,
                CP1_UNITS.get(code, "") if codepage == 1 else "",
                device_time=when,
                flags=flags,
                seq=self._seq,
                texts=self._alarm_texts[1] + self._alarm_texts[2],
            )
            for code, value in parse_measured(msg.data)
        ]
