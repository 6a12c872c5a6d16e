"""GE Datex-Ohmeda S/5 DRI records: 0x7E framing, the 8-bit checksum, the 40-byte header.

    0x7E | escaped(record + checksum) | 0x7E

0x7E and 0x7D inside a frame travel as 0x7D, byte ^ 0x20 — the checksum byte too.
The checksum is the 8-bit sum of every record byte; r_len (header bytes 0-1) must
equal the record length. Little-endian throughout. Bad frames are counted and
skipped; the decoder resynchronises on the next flag. Sans-IO, no clock.

Fact sheet: shared/protocols/datex-s5.md §2-§4.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_RECORD_BYTES",
    "DatexFrameDecoder",
    "Record",
    "build_record",
    "encode_frame",
    "parse_record",
]

FLAG: Final = 0x7E
ESC: Final = 0x7D
HEADER_BYTES: Final = 40
MAX_RECORD_BYTES: Final = 40 + 1450
EOL_SUBRECORD: Final = 0xFF
_HEADER: Final = struct.Struct("<hBBHIBBHh")  # r_len .. r_maintype (16 bytes)


def checksum(record: bytes) -> int:
    return sum(record) & 0xFF


def encode_frame(record: bytes) -> bytes:
    out = bytearray((FLAG,))
    for b in record + bytes((checksum(record),)):
        if b in (FLAG, ESC):
            out += bytes((ESC, b ^ 0x20))
        else:
            out.append(b)
    out.append(FLAG)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Record:
    r_nbr: int
    dri_level: int
    plug_id: int
    r_time: int
    main_type: int
    subrecords: tuple[tuple[int, bytes], ...]  # (sr_type, bytes up to the next offset)


def build_record(main_type: int, subrecords: list[tuple[int, bytes]], *, r_time: int = 0, dri_level: int = 0) -> bytes:
    if len(subrecords) > 8:
        raise ValueError("at most 8 subrecords per record")
    descriptors = bytearray()
    offset = 0
    for sr_type, body in subrecords:
        descriptors += struct.pack("<hB", offset, sr_type)
        offset += len(body)
    if len(subrecords) < 8:
        descriptors += struct.pack("<hB", 0, EOL_SUBRECORD)
    descriptors += bytes(24 - len(descriptors))
    data = b"".join(body for _, body in subrecords)
    r_len = HEADER_BYTES + len(data)
    header = _HEADER.pack(r_len, 0, dri_level, 0, r_time, 0, 0, 0, main_type)
    return header + bytes(descriptors) + data


def parse_record(record: bytes) -> Record:
    """Header + subrecords; ValueError if the descriptors point outside the record."""
    _, r_nbr, level, plug_id, r_time, _, _, _, main_type = _HEADER.unpack_from(record)
    data = record[HEADER_BYTES:]
    entries: list[tuple[int, int]] = []
    for i in range(8):
        offset, sr_type = struct.unpack_from("<hB", record, 16 + 3 * i)
        if sr_type == EOL_SUBRECORD:
            break
        if not 0 <= offset <= len(data) or (entries and offset < entries[-1][0]):
            raise ValueError(f"subrecord {i} offset {offset} outside the {len(data)}-byte data area")
        entries.append((offset, sr_type))
    subrecords = []
    for i, (offset, sr_type) in enumerate(entries):
        end = entries[i + 1][0] if i + 1 < len(entries) else len(data)
        subrecords.append((sr_type, data[offset:end]))
    return Record(r_nbr, level, plug_id, r_time, main_type, tuple(subrecords))


@dataclass(slots=True)
class FrameStats:
    frames_ok: int = 0
    frames_bad: int = 0


class DatexFrameDecoder:
    """Bytes in, checked records out (header + data, checksum removed)."""

    def __init__(self) -> None:
        self.stats = FrameStats()
        self.last_error = ""
        self._buf = bytearray()
        self._in_frame = False
        self._escaped = False

    def feed(self, data: bytes) -> list[bytes]:
        records: list[bytes] = []
        for b in data:
            if b == FLAG:
                if self._in_frame and self._buf:
                    record = self._finish()
                    if record is not None:
                        records.append(record)
                # A flag both ends one frame and may start the next (7E 7E is two flags).
                self._in_frame, self._escaped = True, False
                self._buf.clear()
            elif not self._in_frame:
                continue  # noise before the first flag
            elif self._escaped:
                self._escaped = False
                self._buf.append(b ^ 0x20)
            elif b == ESC:
                self._escaped = True
            else:
                self._buf.append(b)
                if len(self._buf) > MAX_RECORD_BYTES + 1:
                    self._bad(f"frame longer than {MAX_RECORD_BYTES} bytes")
                    self._in_frame = False
                    self._buf.clear()
        return records

    def _bad(self, why: str) -> None:
        self.stats.frames_bad += 1
        self.last_error = why

    def _finish(self) -> bytes | None:
        raw = bytes(self._buf)
        if self._escaped:
            self._bad("frame ends inside an escape")
            return None
        record, cs = raw[:-1], raw[-1] if raw else 0
        if len(record) < HEADER_BYTES:
            self._bad(f"record of {len(record)} bytes is shorter than its header")
            return None
        if checksum(record) != cs:
            self._bad("checksum mismatch")
            return None
        r_len = struct.unpack_from("<h", record)[0]
        if r_len != len(record):
            self._bad(f"r_len {r_len} but {len(record)} record bytes")
            return None
        self.stats.frames_ok += 1
        return record
