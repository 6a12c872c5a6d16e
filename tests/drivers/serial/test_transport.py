"""The real transport on pseudo-terminals with real termios settings."""

import asyncio
import contextlib
import os
import termios
import tty

import pytest

from drivers.serial.transport import PortSettings, PortUnavailable, PortVanished, SerialStream


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    yield master, name
    for fd in (master, slave):
        with contextlib.suppress(OSError):
            os.close(fd)


async def test_settings_are_applied_to_the_tty(pty_pair):
    _master, name = pty_pair
    stream = SerialStream.open(PortSettings(name, baud=19200, stopbits=2, rtscts=True))
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOCTTY)
        try:
            iflag, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        assert ispeed == ospeed == termios.B19200
        # Linux's pty driver forces CS8 and no parity whatever is asked (it has no
        # wire), so those two are only checkable on a real UART; the rest sticks.
        assert cflag & termios.CSTOPB
        assert cflag & termios.CRTSCTS
        assert not iflag & termios.IXON
    finally:
        stream.close()


async def test_reads_bytes_through_the_event_loop_and_writes_back(pty_pair):
    master, name = pty_pair
    stream = SerialStream.open(PortSettings(name))
    try:
        asyncio.get_running_loop().call_later(0.05, os.write, master, b"hello")
        data = await asyncio.wait_for(stream.read(), 2)
        assert data == b"hello"
        stream.write(b"ping")
        await asyncio.sleep(0.05)
        assert os.read(master, 100) == b"ping"
    finally:
        stream.close()


async def test_exclusive_port_cannot_be_opened_twice(pty_pair):
    _, name = pty_pair
    stream = SerialStream.open(PortSettings(name, exclusive=True))
    try:
        with pytest.raises(PortUnavailable):
            SerialStream.open(PortSettings(name, exclusive=True))
    finally:
        stream.close()


async def test_missing_port_is_port_unavailable(tmp_path):
    with pytest.raises(PortUnavailable, match="missing"):
        SerialStream.open(PortSettings(str(tmp_path / "missing")))


async def test_closing_the_device_end_is_port_vanished(pty_pair):
    master, name = pty_pair
    stream = SerialStream.open(PortSettings(name))
    try:
        os.close(master)  # the USB-serial adapter is unplugged
        with pytest.raises(PortVanished):
            await asyncio.wait_for(stream.read(), 2)
    finally:
        stream.close()
