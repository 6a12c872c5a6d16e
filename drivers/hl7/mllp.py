"""MLLP framing, sans-IO: VT (0x0B) message FS (0x1C) CR (0x0D).

Bytes before VT are skipped and counted (a run containing anything but white
space is one garbage run); a VT inside an open block means the sender restarted
(the partial block is counted bad and dropped). A block over `MAX_BLOCK_BYTES` is
not buffered further: its first `HEAD_BYTES` are kept so the receiver can still
answer it (with a reject naming the bound), the rest is skipped up to its FS CR.
Works the same on a serial port and on a TCP stream.

The scan jumps between the three bytes that matter with a compiled regex and
copies the data between them in slices: the per-byte cost is C code, so a 1 MiB
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
# An ORU^R01 from a multi-parameter monitor is a few kB; 256 KiB is far beyond any
# real message and bounds the memory, and the parse time, one sender can take.
MAX_BLOCK_BYTES: Final = 256 * 1024
# Enough of an oversized block to read its MSH (sender, control id) for the reject.
HEAD_BYTES: Final = 4096
_SPECIAL: Final = re.compile(rb"[\x0b\x1c]")
_VT_RUN: Final = re.compile(rb"\x0b+")  # runs are taken at once: 64 KiB of VT is one step, not 65,536
_FS_RUN: Final = re.compile(rb"\x1c+")
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
                end = n if j < 0 else j
                self._skip(data, i, end)
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
            match = _SPECIAL.search(data, i)
            j = n if match is None else match.start()
            self._take(data[i:j])
            if match is None:
                break
            if data[j] == VT:  # each VT restarts the block: k of them, k bad blocks
                run = _VT_RUN.match(data, j)
                i = run.end() if run else j + 1
                self._bad("start block inside an open block", i - j)
                self._buf.clear()
                self._oversized = False
            else:  # FS: the last of a run may end the block; those before it are data
                run = _FS_RUN.match(data, j)
                i = run.end() if run else j + 1
                self._take(b"\x1c" * (i - j - 1))
                self._fs_seen = True
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
