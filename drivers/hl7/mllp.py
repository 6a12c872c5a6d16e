"""MLLP framing, sans-IO: VT (0x0B) message FS (0x1C) CR (0x0D).

Bytes before VT are skipped and counted (a run containing anything but white
space is one garbage run); a VT inside an open block means the sender restarted
(the partial block is counted bad and dropped). A block over `MAX_BLOCK_BYTES` is
not buffered further: its first `HEAD_BYTES` are kept so the receiver can still
answer it (with a reject naming the bound), the rest is skipped up to its FS CR.
Works the same on a serial port and on a TCP stream.

The scan works a block at a time with find/rfind/count and copies slices: the
per-byte cost is C code, and the Python steps are a few per block, whatever the
block holds (64 KiB of alternating VT FS is one step, not 65,536), so a 1 MiB
read costs about as much as copying it.

Fact sheet: shared/protocols/hl7-mllp.md §1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["HEAD_BYTES", "MAX_BLOCK_BYTES", "MllpDecoder", "Oversized", "frame"]

VT: Final = 0x0B
FS: Final = 0x1C
CR: Final = 0x0D
# An ORU^R01 from a multi-parameter monitor is a few kB (256 segments, the segment
# bound, are under 40 KB); 64 KiB bounds the memory and the parse time one
# connection can take, and since 16 connections may each complete a message in
# one loop turn, the bound times the connection limit is the worst stall.
MAX_BLOCK_BYTES: Final = 64 * 1024
# Enough of an oversized block to read its MSH (sender, control id) for the reject.
HEAD_BYTES: Final = 4096
_END: Final = b"\x1c\r"
_NOT_SPACE: Final = re.compile(rb"[^ \t\r\n]")


def frame(message: bytes) -> bytes:
    return bytes((VT,)) + message + bytes((FS, CR))


@dataclass(frozen=True, slots=True)
class Oversized:
    """A complete block that was longer than the bound: its head and why it was dropped."""

    head: bytes
    reason: str


@dataclass(slots=True)
class MllpStats:
    blocks_ok: int = 0
    blocks_bad: int = 0
    blocks_oversized: int = 0  # complete blocks over the bound (answered with a reject)
    bytes_skipped: int = 0  # outside any block
    garbage_runs: int = 0  # runs of skipped bytes holding more than white space


class MllpDecoder:
    def __init__(self, max_block_bytes: int = MAX_BLOCK_BYTES) -> None:
        self.stats = MllpStats()
        self.last_error = ""
        self._max = max_block_bytes
        self._buf = bytearray()
        self._open = False
        self._fs_seen = False
        self._oversized = False  # open block past the bound: skipping to its end
        self._in_garbage = False

    @property
    def in_block(self) -> bool:
        """A block has started and not ended (the listener's message deadline runs)."""
        return self._open

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        out: list[bytes | Oversized] = []
        i, n = 0, len(data)
        while i < n:
            if not self._open:
                j = data.find(VT, i)
                self._skip(data, i, n if j < 0 else j)
                if j < 0:
                    break
                self._in_garbage = False
                self._open, self._fs_seen, self._oversized = True, False, False
                self._buf.clear()
                i = j + 1
                continue
            if self._fs_seen:
                self._fs_seen = False
                if data[i] == CR:
                    i += 1
                    self._open = False
                    out.append(self._close())
                    continue
                self._take(b"\x1c")  # an FS not followed by CR is data (tolerated)
            # One block's worth at a time, whatever is in it: up to its FS CR (or the
            # end of this data). Every VT in there restarts the block, so only what
            # follows the last one counts; FS bytes in there are data.
            end = data.find(_END, i)
            stop = n if end < 0 else end
            last_vt = data.rfind(VT, i, stop)
            if last_vt >= 0:
                self._bad("start block inside an open block", data.count(VT, i, last_vt + 1))
                self._buf.clear()
                self._oversized = False
                i = last_vt + 1
            if end >= 0:
                self._take(data[i:end])
                i = end + 2
                self._open = False
                out.append(self._close())
            elif n > i and data[n - 1] == FS:  # may be the end with its CR in the next read
                self._take(data[i : n - 1])
                self._fs_seen = True
                break
            else:
                self._take(data[i:n])
                break
        return out

    def _skip(self, data: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        self.stats.bytes_skipped += end - start
        if not self._in_garbage and _NOT_SPACE.search(data, start, end):
            self._in_garbage = True
            self.stats.garbage_runs += 1

    def _take(self, chunk: bytes) -> None:
        if self._oversized or not chunk:
            return
        self._buf += chunk
        if len(self._buf) > self._max:
            # Keep the head only (the same bytes however the input was chunked).
            del self._buf[min(HEAD_BYTES, self._max) :]
            self._oversized = True

    def _close(self) -> bytes | Oversized:
        block = bytes(self._buf)
        self._buf.clear()
        if self._oversized:
            self._oversized = False
            self.stats.blocks_oversized += 1
            return Oversized(block, f"message longer than {self._max} bytes (bound)")
        self.stats.blocks_ok += 1
        return block

    def _bad(self, why: str, count: int = 1) -> None:
        self.stats.blocks_bad += count
        self.last_error = why
