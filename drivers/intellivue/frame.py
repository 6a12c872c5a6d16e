"""Sans-IO frame layer of Philips IntelliVue Data Export over MIB/RS-232.

    BOF 0xC0 | 0x11 0x01 | length u16 BE | user data | FCS (2, LSB first) | EOF 0xC1

Every byte between BOF and EOF (header, length, data *and* FCS) is escaped:
0xC0, 0xC1 and 0x7D travel as 0x7D, byte ^ 0x20. FCS is CRC-16/X.25 over header
+ user data. `7D C1` aborts a frame. Bad frames (FCS, length, abort, oversize)
are counted and skipped; the decoder resynchronises on the next BOF and holds
a trailing partial frame until the rest arrives. This module only frames: the
session (association, polls) and the attribute decoding are separate.

Fact sheet: shared/protocols/intellivue-mib.md §2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_FRAME_BYTES", "FrameDecoder", "FrameStats", "encode_frame", "fcs16"]

BOF: Final = 0xC0
EOF: Final = 0xC1
ESC: Final = 0x7D
HEADER: Final = b"\x11\x01"
# The association negotiates an MTU of at most 996 bytes; anything much larger is
# line noise between a stray BOF and a distant EOF, dropped and counted.
MAX_FRAME_BYTES: Final = 4096
GOOD_RESIDUE: Final = 0xF0B8


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE: Final = _table()


def _crc(data: bytes, crc: int = 0xFFFF) -> int:
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def fcs16(data: bytes) -> int:
    """CRC-16/X.25 as transmitted (final one's complement)."""
    return _crc(data) ^ 0xFFFF


def _escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in (BOF, EOF, ESC):
            out += bytes((ESC, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def encode_frame(user_data: bytes) -> bytes:
    if len(user_data) > 0xFFFF:
        raise ValueError("user data longer than 65535 bytes")
    body = HEADER + len(user_data).to_bytes(2, "big") + user_data
    fcs = fcs16(body)
    return bytes((BOF,)) + _escape(body + bytes((fcs & 0xFF, fcs >> 8))) + bytes((EOF,))


@dataclass(slots=True)
class FrameStats:
    frames_ok: int = 0
    frames_bad: int = 0
    bytes_in: int = 0


class FrameDecoder:
    """Bytes in, user-data payloads out."""

    def __init__(self) -> None:
        self.stats = FrameStats()
        self.last_error = ""
        self._buf = bytearray()
        self._in_frame = False
        self._escaped = False

    def _bad(self, why: str) -> None:
        self.stats.frames_bad += 1
        self.last_error = why

    def feed(self, data: bytes) -> list[bytes]:
        self.stats.bytes_in += len(data)
        frames: list[bytes] = []
        for b in data:
            if not self._in_frame:
                if b == BOF:
                    self._start()
                continue  # noise between frames
            frame = self._in_frame_byte(b)
            if frame is not None:
                frames.append(frame)
            if self._in_frame and len(self._buf) > MAX_FRAME_BYTES:
                self._bad(f"frame longer than {MAX_FRAME_BYTES} bytes")
                self._in_frame = False
        return frames

    def _in_frame_byte(self, b: int) -> bytes | None:
        """One byte inside a frame; the frame when this byte ended a good one."""
        if b == BOF:  # a new frame began before this one ended
            if self._buf or self._escaped:
                self._bad("BOF inside a frame")
            self._start()
        elif b == EOF:
            self._in_frame = False
            if self._escaped:
                self._bad("abort sequence 7D C1")
                return None
            return self._finish()
        elif self._escaped:
            self._escaped = False
            self._buf.append(b ^ 0x20)
        elif b == ESC:
            self._escaped = True
        else:
            self._buf.append(b)
        return None

    def _start(self) -> None:
        self._buf.clear()
        self._in_frame = True
        self._escaped = False

    def _finish(self) -> bytes | None:
        raw = bytes(self._buf)
        if len(raw) < 6 or raw[:2] != HEADER:
            self._bad("short frame or unknown header")
            return None
        length = int.from_bytes(raw[2:4], "big")
        if length != len(raw) - 6:
            self._bad(f"length field {length} but {len(raw) - 6} data bytes")
            return None
        if _crc(raw) != GOOD_RESIDUE:
            self._bad("FCS mismatch")
            return None
        self.stats.frames_ok += 1
        return raw[4:-2]
