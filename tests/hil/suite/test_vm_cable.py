"""The VM's bench cable (hil/suite/vm_cable.py) on real ptys: what the bench device
writes reaches the box's serial port; while the box is off (its pty gone) the bytes
are lost and counted and the bench's port stays open; plugged into a new pty (the
boot after a power cut) it carries bytes again."""

import os
import select
import time
import tty
from pathlib import Path

import serial

from hil.suite.vm_cable import Cable


def _box_pty() -> tuple[int, str]:
    """A pty standing for QEMU's: the master is the guest's UART, the slave the path."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, os.ttyname(slave)


def _read(fd: int, n: int, timeout_s: float = 2.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            out += os.read(fd, 4096)
    return out


def test_the_cable_carries_bytes_across_a_power_cut(tmp_path: Path) -> None:
    cable = Cable(tmp_path)
    bench = serial.Serial(str(cable.path), baudrate=9600, timeout=0, write_timeout=0)
    try:
        guest, path = _box_pty()
        cable.connect(path)
        bench.write(b"SPO2=97\r\n")
        assert _read(guest, 9) == b"SPO2=97\r\n"
        cable.disconnect()  # QEMU killed
        os.close(guest)
        bench.write(b"LOST\r\n")  # the bench's port is still open and writable
        deadline = time.monotonic() + 2
        while cable.lost_bytes < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cable.lost_bytes == 6
        guest2, path2 = _box_pty()  # the next boot's pty
        assert path2 != "" and Path(cable.path).resolve() != Path(path2)
        cable.connect(path2)
        bench.write(b"SPO2=75\r\n")
        assert _read(guest2, 9) == b"SPO2=75\r\n"  # and nothing of what was sent while off
        os.close(guest2)
    finally:
        bench.close()
        cable.close()
    assert not cable.path.exists()
