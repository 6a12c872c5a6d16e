"""MLLP framing, sans-IO: VT (0x0B) message FS (0x1C) CR (0x0D).

Bytes before VT are ignored; a VT inside an open block means the sender restarted
(the partial block is counted bad and dropped); blocks over `MAX_BLOCK_BYTES` are
dropped and counted. Works the same on a serial port and on a TCP stream.

Fact sheet: shared/protocols/hl7-mllp.md §1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_BLOCK_BYTES", "MllpDecoder", "frame"]

VT: Final = 0x0B
FS: Final = 0x1C
CR: Final = 0x0D
# An ORU^R01 from a multi-parameter monitor is a few kB; 1 MiB is far beyond any
# real message and bounds the memory a broken sender can take.
MAX_BLOCK_BYTES: Final = 1 << 20


def frame(message: bytes) -> bytes:
    return bytes((VT,)) + message + bytes((FS, CR))


@dataclass(slots=True)
class MllpStats:
    blocks_ok: int = 0
    blocks_bad: int = 0


class MllpDecoder:
    def __init__(self) -> None:
        self.stats = MllpStats()
        self.last_error = ""
        self._buf = bytearray()
        self._open = False
        self._fs_seen = False

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for b in data:
            if not self._open:
                if b == VT:
                    self._open, self._fs_seen = True, False
                    self._buf.clear()
                continue
            if self._fs_seen:
                self._fs_seen = False
                if b == CR:
                    self._open = False
                    self.stats.blocks_ok += 1
                    out.append(bytes(self._buf))
                    self._buf.clear()
                    continue
                self._buf.append(FS)  # an FS not followed by CR is data (tolerated)
            if b == VT:
                self._bad("start block inside an open block")
                self._buf.clear()
            elif b == FS:
                self._fs_seen = True
            else:
                self._buf.append(b)
                if len(self._buf) > MAX_BLOCK_BYTES:
                    self._bad(f"block longer than {MAX_BLOCK_BYTES} bytes")
                    self._open = False
                    self._buf.clear()
        return out

    def _bad(self, why: str) -> None:
        self.stats.blocks_bad += 1
        self.last_error = why
