"""Serial ports on the event loop: pyserial for the termios settings, the loop's
reader on the file descriptor for the bytes. No threads.

`ByteStream` is the interface the link glue uses; `SerialStream` is the real one
and `MemoryStream` the in-memory twin for unit tests. Errors are translated at
this edge: an open that fails is `PortUnavailable`, a port that disappears while
open (USB-serial unplugged: EIO, ENXIO, a readable fd that gives no bytes) is
`PortVanished`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from typing import Final, Protocol

import serial

from appliance.core.errors import BedsideDeviceError
from drivers.serial.line import PortSettings

__all__ = [
    "MAX_READ_BYTES",
    "MAX_WRITE_BUFFER_BYTES",
    "ByteStream",
    "MemoryStream",
    "PortSettings",
    "PortUnavailable",
    "PortVanished",
    "SerialStream",
    "TransportError",
]

MAX_READ_BYTES: Final = 4096
# Codecs write short requests and keep-alives; more than this pending means the
# device stopped reading, and the write is refused rather than buffered forever.
MAX_WRITE_BUFFER_BYTES: Final = 65_536


class TransportError(BedsideDeviceError):
    """Base of the serial transport's errors (link trouble, not bad data)."""


class PortUnavailable(TransportError):
    """The port cannot be opened (missing, busy, permission)."""


class PortVanished(TransportError):
    """The open port went away."""


class ByteStream(Protocol):
    async def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SerialStream:
    def __init__(self, port: serial.Serial) -> None:
        self._serial = port
        self._fd = port.fileno()
        self._loop = asyncio.get_running_loop()
        self._pending = bytearray()
        self._closed = False

    @classmethod
    def open(cls, settings: PortSettings) -> SerialStream:
        try:
            port = serial.Serial(
                port=settings.port,
                baudrate=settings.baud,
                bytesize=settings.bytesize,
                parity=settings.parity,
                stopbits=settings.stopbits,
                rtscts=settings.rtscts,
                xonxoff=settings.xonxoff,
                dsrdtr=False,
                exclusive=settings.exclusive,
                timeout=0,
                write_timeout=0,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortUnavailable(f"{settings.port}: {exc}") from exc
        return cls(port)

    async def read(self) -> bytes:
        if self._closed:
            raise PortVanished("port closed")
        ready: asyncio.Future[None] = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_reader(self._fd, wake)
        try:
            await ready
        finally:
            self._loop.remove_reader(self._fd)
        try:
            data = os.read(self._fd, MAX_READ_BYTES)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise PortVanished(f"read failed: {exc.strerror}") from exc
        if not data:
            # Readable but empty is how a vanished tty looks to poll (pyserial's rule).
            raise PortVanished("port readable but returned no data (disconnected)")
        return data

    def write(self, data: bytes) -> None:
        if len(self._pending) + len(data) > MAX_WRITE_BUFFER_BYTES:
            raise TransportError("write buffer full: device is not reading")
        was_idle = not self._pending
        self._pending += data
        if was_idle:
            self._flush()

    def _flush(self) -> None:
        try:
            sent = os.write(self._fd, self._pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._pending.clear()  # the next read reports the vanished port
            return
        del self._pending[:sent]
        if self._pending:
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        self._loop.remove_writer(self._fd)
        if not self._closed:
            self._flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_writer(self._fd)
        # Closing a vanished port may fail; it is gone either way.
        with contextlib.suppress(serial.SerialException, OSError):
            self._serial.close()


class MemoryStream:
    """In-memory twin: tests push chunks, `vanish()` simulates a cable pull."""

    def __init__(self) -> None:
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written: deque[bytes] = deque(maxlen=1000)
        self.closed = False

    def push(self, data: bytes) -> None:
        self._chunks.put_nowait(data)

    def vanish(self) -> None:
        self._chunks.put_nowait(None)

    async def read(self) -> bytes:
        chunk = await self._chunks.get()
        if chunk is None or self.closed:
            raise PortVanished("memory stream vanished")
        return chunk

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True
