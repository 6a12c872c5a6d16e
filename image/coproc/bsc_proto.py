"""Co-processor wire protocol, firmware side (docs/coproc.md): frames in, replies out.

Pure: no machine, no asyncio, no clock. Runs on MicroPython (the RP2040) and on
CPython (the tests cross-check it against the gateway's own codec). One frame is
`$` body `*` CRC `\\n`; the body is comma-separated printable ASCII starting with
the protocol tag; the CRC is CRC-16/CCITT-FALSE of the body as 4 upper-case hex
digits. A line that is too long, not ASCII, or fails the CRC is corrupt.
"""

PROTOCOL = "B1"  # tag and version: a frame with any other tag is corrupt
FW_VERSION = "1.0.0"
MAX_FRAME = 96  # bytes from '$' to '\n'; a longer line is discarded whole


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode(fields: list[str]) -> bytes:
    """One frame from its body fields (the protocol tag is added first)."""
    body = ",".join([PROTOCOL] + fields).encode()
    return b"$" + body + b"*" + f"{crc16(body):04X}".encode() + b"\n"


def decode(line: bytes) -> list[str] | None:
    """The body fields after the tag, or None when the line is not a valid frame."""
    if len(line) < 8 or line[0] != 0x24 or line[-5] != 0x2A:  # '$' ... '*' CRC
        return None
    body = line[1:-5]
    for byte in body:
        if byte < 0x20 or byte > 0x7E:
            return None
    if bytes(line[-4:]) != f"{crc16(body):04X}".encode():  # upper-case hex only
        return None
    fields = body.decode().split(",")
    if fields[0] != PROTOCOL:
        return None
    return fields[1:]


class LineSplitter:
    """Bytes in, complete lines out; bounded: a line over MAX_FRAME is dropped and counted."""

    def __init__(self) -> None:
        self._buf = b""
        self._skipping = False
        self.overlong = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines: list[bytes] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_FRAME:
                    self._buf = b""
                    if not self._skipping:
                        self.overlong += 1
                    self._skipping = True
                return lines
            line = self._buf[:end]
            self._buf = self._buf[end + 1 :]
            if self._skipping:
                self._skipping = False  # the tail of an over-long line
                continue
            if len(line) + 1 > MAX_FRAME:
                self.overlong += 1
                continue
            lines.append(line.rstrip(b"\r"))
