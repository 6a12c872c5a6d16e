"""Dräger MEDIBUS slow-protocol framing: commands and responses, checksums, embedding.

    command:  ESC code [argument] CS1 CS2 CR
    response: SOH code [data]     CS1 CS2 CR

CS = 8-bit sum of every byte from ESC/SOH through the last data byte, as two
upper-case hex digits. Realtime bytes (bit 7 set) may appear anywhere and are
stripped first (and counted: they do not keep the link alive). A command may be
embedded inside a response; it is parsed on its own and the response continues.
DC1 / DC3 (suspend / resume, the reverse of XON/XOFF) and CAN (the sender aborts
the message in progress) are reported as control events. Sans-IO.

Fact sheet: shared/protocols/medibus.md §2-§4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Control",
    "MedibusParser",
    "Message",
    "checksum",
    "command",
    "response",
]

ESC: Final = 0x1B
SOH: Final = 0x01
CR: Final = 0x0D
NAK: Final = 0x15
DC1: Final = 0x11  # MEDIBUS: suspend transmission
DC3: Final = 0x13  # MEDIBUS: resume transmission
CAN: Final = 0x18
MAX_MESSAGE_BYTES: Final = 3845 + 6  # response data bound + SOH, code, CS, CR


def checksum(data: bytes) -> bytes:
    return f"{sum(data) & 0xFF:02X}".encode("ascii")


def command(code: int, argument: bytes = b"") -> bytes:
    body = bytes((ESC, code)) + argument
    return body + checksum(body) + b"\r"


def response(code: int, data: bytes = b"") -> bytes:
    body = bytes((SOH, code)) + data
    return body + checksum(body) + b"\r"


@dataclass(frozen=True, slots=True)
class Message:
    kind: Literal["command", "response"]
    code: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Control:
    what: Literal["suspend", "resume", "cancel"]


@dataclass(slots=True)
class ParserStats:
    messages_ok: int = 0
    messages_bad: int = 0
    realtime_bytes: int = 0
    slow_bytes: int = 0


@dataclass(slots=True)
class _Open:
    lead: int
    body: bytearray = field(default_factory=bytearray)


class MedibusParser:
    """Bytes in, messages / control events / bad-message reasons out, in arrival order."""

    def __init__(self) -> None:
        self.stats = ParserStats()
        self.bad_commands: list[int] = []  # codes of corrupt commands: each needs a NAK
        self.last_error = ""
        self._outer: _Open | None = None  # a response being received
        self._inner: _Open | None = None  # a command embedded in it (or on its own)

    def feed(self, data: bytes) -> list[Message | Control]:
        out: list[Message | Control] = []
        for b in data:
            if b & 0x80:
                self.stats.realtime_bytes += 1
                continue
            self.stats.slow_bytes += 1
            if b in (DC1, DC3):
                out.append(Control("suspend" if b == DC1 else "resume"))
            elif b == CAN:
                self._inner = self._outer = None  # the sender gave up on what it was sending
                out.append(Control("cancel"))
            elif b == ESC:
                self._inner = _Open(ESC)  # a command starts, possibly inside a response
            elif b == SOH:
                if self._outer is not None or self._inner is not None:
                    self._bad("response started before the previous message ended")
                self._outer, self._inner = _Open(SOH), None
            elif b == CR:
                message = self._end_current()
                if message is not None:
                    out.append(message)
            else:
                self._body_byte(b)
        return out

    def _end_current(self) -> Message | None:
        """CR: the innermost open message ends (a command inside a response first)."""
        current = self._inner or self._outer
        if current is None:
            return None
        if current is self._inner:
            self._inner = None
        else:
            self._outer = None
        return self._finish(current)

    def _body_byte(self, b: int) -> None:
        current = self._inner or self._outer
        if current is None:
            return  # noise between messages
        current.body.append(b)
        if len(current.body) > MAX_MESSAGE_BYTES:
            self._bad(f"message longer than {MAX_MESSAGE_BYTES} bytes")
            self._inner = self._outer = None

    def _bad(self, why: str) -> None:
        self.stats.messages_bad += 1
        self.last_error = why

    def _finish(self, msg: _Open) -> Message | None:
        body = msg.body
        if len(body) < 3:
            self._bad("message too short for a code and a checksum")
            return None
        full = bytes((msg.lead,)) + bytes(body[:-2])
        if bytes(body[-2:]) != checksum(full):
            self._bad(f"checksum {bytes(body[-2:])!r}, expected {checksum(full)!r}")
            if msg.lead == ESC:
                self.bad_commands.append(body[0])
            return None
        self.stats.messages_ok += 1
        kind: Literal["command", "response"] = "command" if msg.lead == ESC else "response"
        return Message(kind, body[0], bytes(body[1:-2]))
