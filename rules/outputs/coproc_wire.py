"""The alarm co-processor's wire protocol, gateway side (docs/coproc.md).

Sans-IO: frames out as bytes, reply lines in as `Reply`. The firmware's own
implementation is `image/coproc/bsc_proto.py` (MicroPython); the tests run each
against the other on the real interpreter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_FRAME", "PROTOCOL", "Reply", "Status", "crc16", "frame", "parse_reply", "priority_letter"]

PROTOCOL: Final = "B1"
MAX_FRAME: Final = 96  # bytes from '$' to '\n', both sides
_LINE: Final = re.compile(rb"^\$(?P<body>[\x20-\x7e]+)\*(?P<crc>[0-9A-F]{4})\r?$")
_LETTER: Final = {"high": "H", "medium": "M", "low": "L"}


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def frame(session: str, seq: int, command: str, *args: str) -> bytes:
    body = ",".join((PROTOCOL, session, str(seq), command, *args)).encode("ascii")
    out = b"$" + body + b"*" + f"{crc16(body):04X}".encode() + b"\n"
    if len(out) > MAX_FRAME:
        raise ValueError(f"co-processor frame over {MAX_FRAME} bytes: {command}")
    return out


def priority_letter(priority: str | None) -> str:
    """The heartbeat's letter for an annunciation priority (None = '-')."""
    return _LETTER.get(str(priority), "-") if priority else "-"


@dataclass(frozen=True, slots=True)
class Reply:
    session: str
    seq: int
    kind: str  # ST, VER, TEST, REPL, ERR
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Status:
    state: str  # arming | watching | failed | recovered
    mirror: bool
    bad: int
    replayed: int
    failures: int

    @classmethod
    def of(cls, reply: Reply) -> Status | None:
        a = reply.args
        if reply.kind != "ST" or len(a) != 5 or not all(x.isdigit() for x in a[2:]):
            return None
        return cls(a[0], a[1] == "1", int(a[2]), int(a[3]), int(a[4]))


def parse_reply(line: bytes) -> Reply | None:
    """One line from the co-processor (without its newline); None if it is not a valid frame."""
    match = _LINE.match(line)
    if match is None or len(line) + 1 > MAX_FRAME:
        return None
    body = match["body"]
    if int(match["crc"], 16) != crc16(body):
        return None
    fields = body.decode("ascii").split(",")
    if len(fields) < 4 or fields[0] != PROTOCOL or not fields[2].isdigit():
        return None
    return Reply(fields[1], int(fields[2]), fields[3], tuple(fields[4:]))
