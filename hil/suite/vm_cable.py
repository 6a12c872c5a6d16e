"""The bench's serial cable to the VM: a pty the bench device writes to, relayed to the
VM's serial port (the QEMU pty behind the box's /dev/ttyS1) by one thread.

Why a relay and not the QEMU pty itself: QEMU's pty goes with QEMU. A power cut kills
QEMU and the next boot gets a new pty, while a real cable stays plugged into a box that
loses power. Through the relay the bench's device keeps its port: what it sends while
the box is off is lost, as it would be on the wire, and reaches the box again once the
relay is connected to the new pty.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import tty
from pathlib import Path
from typing import Final

import serial

__all__ = ["Cable"]

_BAUD: Final = 9600
_READ_BYTES: Final = 4096


class Cable:
    def __init__(self, workdir: Path) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # the bench end: bytes as written, no line discipline
        self.path = workdir / "ttyS1-cable"
        self.path.unlink(missing_ok=True)
        self.path.symlink_to(os.ttyname(self._slave))
        self._box: serial.Serial | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lost_bytes = 0  # sent while the box was off
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def connect(self, box_pty: str) -> None:
        """Plug the cable into the box's serial port (after a boot)."""
        port = serial.Serial(box_pty, baudrate=_BAUD, timeout=0, write_timeout=0)
        with self._lock:
            self._box = port

    def disconnect(self) -> None:
        """The box's end went away (QEMU killed)."""
        with self._lock:
            port, self._box = self._box, None
        if port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()

    def _relay(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._master, _READ_BYTES)
            except OSError:
                continue
            with self._lock:
                port = self._box
                if port is None:
                    self.lost_bytes += len(data)
                    continue
                try:
                    port.write(data)
                except (OSError, serial.SerialException):
                    self.lost_bytes += len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.disconnect()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.path.unlink(missing_ok=True)
