"""The co-processor firmware on real MicroPython (hil/mpy_host.py), and a wire to it."""

from __future__ import annotations

import importlib.util
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

import pytest
import serial

from hil.mpy_host import MpyBoard
from rules.outputs.coproc_wire import Reply, Status, frame, parse_reply

FIRMWARE = Path(__file__).resolve().parents[3] / "image" / "coproc"
BUZZER, RED, YELLOW, CYAN = 15, 16, 17, 18  # image/coproc/bsc_config.py


def firmware_module(name: str) -> ModuleType:
    """A pure firmware module (bsc_*) loaded under CPython."""
    spec = importlib.util.spec_from_file_location(f"coproc_{name}", FIRMWARE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Wire:
    """The gateway's end of the UART, speaking with the gateway's own codec."""

    def __init__(self, board: MpyBoard) -> None:
        self.board = board
        self.ser = serial.Serial(board.port, 115200, timeout=1.0)
        self.session = secrets.token_hex(4)
        self.seq = 0

    def send(self, command: str, *args: str) -> None:
        self.seq += 1
        self.ser.write(frame(self.session, self.seq, command, *args))

    def raw(self, data: bytes) -> None:
        self.ser.write(data)

    def reply(self, timeout_s: float = 1.0) -> Reply | None:
        self.ser.timeout = timeout_s
        line = self.ser.readline()
        return parse_reply(line.rstrip(b"\n")) if line else None

    def ask(self, command: str, *args: str) -> Reply:
        self.send(command, *args)
        reply = self.reply()
        assert reply is not None, f"no reply to {command}: {self.board.stderr()}"
        assert (reply.session, reply.seq) == (self.session, self.seq)
        return reply

    def status(self, command: str = "HB", *args: str) -> Status:
        status = Status.of(self.ask(command, *(args or (("-", "-") if command == "HB" else ()))))
        assert status is not None
        return status

    def silence(self, timeout_s: float = 0.3) -> bool:
        """True if nothing at all comes back within the time."""
        self.ser.timeout = timeout_s
        return self.ser.read(1) == b""

    def hello(self) -> Status:
        self.session = secrets.token_hex(4)
        return self.status("HELLO")


def pulses(board: MpyBoard, pin: int, start: float, end: float) -> list[tuple[float, float]]:
    """(on time, length) of each pulse of `pin` that began in [start, end)."""
    edges = [c for c in list(board.pins) if c.pin == pin and start <= c.at < end + 1.0]
    out, on = [], None
    for change in edges:
        if change.value and on is None:
            on = change.at
        elif not change.value and on is not None:
            if on < end:
                out.append((on - start, change.at - on))
            on = None
    return out


def wait_for(predicate: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.01)
    return False


def start(overrides: Mapping[str, object] | None = None) -> tuple[MpyBoard, Wire]:
    board = MpyBoard(FIRMWARE, config="bsc_config", overrides=overrides)
    board.wait_event("boot")
    return board, Wire(board)


@pytest.fixture
def fast() -> Iterator[tuple[MpyBoard, Wire]]:
    """Firmware with a 1 s heartbeat timeout and a 1.5 s boot grace (test time)."""
    board, wire = start({"TIMEOUT_MS": 1000, "BOOT_GRACE_MS": 1500})
    yield board, wire
    wire.ser.close()
    board.close()
