"""Which Nonin serial format a byte stream is in, from its structure alone.

Format #8 has no checksum, so noise or a #2/#7 stream read as #8 yields plausible
looking numbers (issue #14: SpO2 126 %, pulse 509 /min, or HR 70 from a #2 stream).
`FormatSniffer` looks at every byte once for the three structures side by side:

- #2: `01 STATUS PLETH FLOAT CHK`, STATUS bit 7 set and bit 6 (reserved) clear,
  CHK the sum of the first four bytes;
- #7: `STATUS PLETH PLETH FLOAT CHK`, same STATUS and checksum rules;
- #8: `STATUS1 HR SPO2 STATUS2`, see `packet8_ok`.

A structure counts only in a run of consecutive frames at its own stride (a lone
match is what noise does). `evidence_at(fmt)` is the stream offset of the last
frame that extended a run of at least 2; `confirmed` names the format whose run
reached a packet's worth (25 frames for #2/#7, 5 packets for #8) most recently.

Fact sheet: shared/protocols/nonin.md §3-§5.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CONFIRM_RUN", "HR_MAX", "SPO2_MAX", "FormatSniffer", "frame_ok", "hr_ok", "packet8_ok", "spo2_ok"]

HR_MISSING: Final = 511
SPO2_MISSING: Final = 127
# The ranges the devices report (Nonin OEM specification: pulse rate 18-321 /min,
# SpO2 0-100 %); anything else but the missing-data codes is not a value of the format.
HR_MAX: Final = 321
SPO2_MAX: Final = 100
CONFIRM_RUN: Final = {2: 25, 7: 25, 8: 5}
_STRIDE: Final = {2: 5, 7: 5, 8: 4}
_HIGH: Final = re.compile(rb"[\x80-\xff]")


def hr_ok(value: int) -> bool:
    return value <= HR_MAX or value == HR_MISSING


def spo2_ok(value: int) -> bool:
    return value <= SPO2_MAX or value == SPO2_MISSING


def packet8_ok(b1: int, b2: int, b3: int, b4: int) -> bool:
    """Sync (only byte 1 has bit 7 set), reserved bits clear (byte 1 bit 6; byte 4
    bits 6, 4, 2, 1), HR and SpO2 within the format's range or the missing codes."""
    if b1 < 0x80 or b1 & 0x40 or b2 >= 0x80 or b3 >= 0x80 or b4 >= 0x80 or b4 & 0x56:
        return False
    return hr_ok((b1 & 0x03) << 7 | b2) and spo2_ok(b3)


def frame_ok(fmt: int, f: bytes | bytearray) -> bool:
    """A #2 or #7 frame: checksum, STATUS bit 7 set and bit 6 clear, #2's 0x01 start."""
    if (f[0] + f[1] + f[2] + f[3]) & 0xFF != f[4]:
        return False
    status = f[1] if fmt == 2 else f[0]
    if status < 0x80 or status & 0x40:
        return False
    return f[0] == 0x01 if fmt == 2 else True


class FormatSniffer:
    def __init__(self) -> None:
        self._tail = bytearray()  # the last bytes not yet examined as a frame start
        self._offset = 0  # stream offset of _tail[0]
        self._runs = {fmt: [0] * _STRIDE[fmt] for fmt in _STRIDE}
        self._last = {fmt: [-100] * _STRIDE[fmt] for fmt in _STRIDE}
        self._evidence = dict.fromkeys(_STRIDE, -(10**9))
        self.confirmed: int | None = None

    def evidence_at(self, fmt: int) -> int:
        return self._evidence[fmt]

    def feed(self, data: bytes) -> None:
        buf = self._tail + data
        end = len(buf) - 4  # a frame start needs 5 bytes (a #8 packet 4: examined one byte later)
        if end <= 0:
            self._tail = buf
            return
        for i in self._candidates(buf, end):
            at = self._offset + i
            if buf[i] == 0x01 and frame_ok(2, buf[i : i + 5]):
                self._hit(2, at)
            if buf[i] >= 0x80:
                if frame_ok(7, buf[i : i + 5]):
                    self._hit(7, at)
                if packet8_ok(buf[i], buf[i + 1], buf[i + 2], buf[i + 3]):
                    self._hit(8, at)
        self._tail = buf[end:]
        self._offset += end

    @staticmethod
    def _candidates(buf: bytearray, end: int) -> list[int]:
        # Only 0x01 (a #2 start) and bytes with bit 7 set (#7, #8) can start a frame:
        # found by C-level scans, so the work per byte stays small.
        starts = [m.start() for m in _HIGH.finditer(buf, 0, end)]
        i = buf.find(1, 0, end)
        while i >= 0:
            starts.append(i)
            i = buf.find(1, i + 1, end)
        starts.sort()
        return starts

    def _hit(self, fmt: int, at: int) -> None:
        stride = _STRIDE[fmt]
        r = at % stride
        runs, last = self._runs[fmt], self._last[fmt]
        runs[r] = runs[r] + 1 if last[r] == at - stride else 1
        last[r] = at
        if runs[r] >= 2:
            self._evidence[fmt] = at
        if runs[r] >= CONFIRM_RUN[fmt]:
            self.confirmed = fmt
