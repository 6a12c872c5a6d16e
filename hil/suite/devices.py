"""Bench devices whose vitals a suite steers step by step, on pseudo-terminals.

The device end of the cable is a `PtyPort` (hil/simulate.py): the gateway opens the
symlink as it would a udev name. Frames come from the families' own encoders
(`masimo_line`, `nonin_packet`), so the gateway reads exactly what the simulators
send. A step's trigger time is when the first frame carrying its values was written:
latency is measured from the device byte, not from the bench's decision.

A device reboot (`reboot`) is the oximeter's power cycle with the cable in: the frame
on the wire when the power goes is cut (its head is sent, its tail never is), the line
stays open and silent for `down_s`, then frames come again, the first ones in the
power-on state: no reading computed yet (Nonin: HR 511 / SpO2 127, nonin.md §7;
Masimo: values as dashes with EXC pulse search, masimo-ascii.md §3-§4). The fact
sheets document no boot banner for either, so none is sent. Neither device's clock
resets: format #8 carries no time, and the Radical-7's clock is not documented to
be lost on a power cycle (the Nonin 9560 loses its clock only with its batteries).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hil.masimo_sim import masimo_line
from hil.nonin_sim import nonin_packet
from hil.scenarios import Vitals
from hil.simulate import GARBAGE, PtyPort, SerialPortWriter
from hil.suite.spec import Device, Step

__all__ = ["PROTOCOL", "BenchDevice"]

PROTOCOL = {"masimo": "masimo", "nonin": "nonin-8"}
_BAUD = 9600
_MIN_TICK_S = 0.005
_MAX_BURST = 200  # frames in one loop turn at most (after a stall of the bench, the rest is skipped)
# After power-on an oximeter needs a few beats before its first reading: the bench
# gives it one Nonin display refresh (nonin.md §3: every 1.5 s) for both families.
BOOT_NO_READING_S = 1.5


@dataclass(slots=True)
class _State:
    spo2: float
    pulse: float
    sensor_off: bool = False
    silent_until: float = 0.0
    clock_offset_s: float = 0.0
    off_until: float = 0.0  # powered off (a reboot) until then: nothing on the line
    booted_at: float = float("-inf")  # monotonic: the last power-on


class BenchDevice:
    """One device on a pty: frames at `rate_hz` with the current vitals until cancelled."""

    def __init__(self, spec: Device, workdir: Path, on_trigger: Callable[[str, float], None], wired: str = "") -> None:
        """`wired`: an existing serial port the device writes to (the VM's ttyS1 pty, a
        USB-serial adapter on the bench) instead of a pty of its own in `workdir`."""
        self.spec = spec
        self.path = workdir / spec.id
        self.wired = wired
        self.port = PtyPort(self.path, _BAUD)
        self._line: SerialPortWriter | None = None
        self.state = _State(spec.spo2, spec.pulse)
        self._on_trigger = on_trigger
        self._pending: list[str] = []  # steps waiting for their first frame
        self.frames = 0

    def vitals(self) -> Vitals:
        s = self.state
        return Vitals(spo2=s.spo2, pulse=s.pulse, pi=3.5, sensor_off=s.sensor_off)

    def clock(self) -> datetime:
        """The device's clock: UTC plus its error, no zone on the wire."""
        return (datetime.now(UTC) + timedelta(seconds=self.state.clock_offset_s)).replace(tzinfo=None)

    def frame(self) -> bytes:
        searching = time.monotonic() - self.state.booted_at < BOOT_NO_READING_S
        if self.spec.family == "masimo":
            return masimo_line("radical7", self.clock(), self.vitals(), searching=searching)
        return nonin_packet(8, self.vitals(), computed=not searching)

    def apply(self, step: Step) -> None:
        """A vitals step: new values from the next frame on (its trigger)."""
        s = self.state
        s.spo2 = step.spo2 if step.spo2 is not None else s.spo2
        s.pulse = step.pulse if step.pulse is not None else s.pulse
        s.sensor_off = step.sensor_off if step.sensor_off is not None else s.sensor_off
        s.clock_offset_s += step.offset_s
        self._pending.append(step.name)

    def _write(self, data: bytes) -> None:
        if self._line is not None:
            self._line.write(data)
        else:
            self.port.write(data)

    def garbage(self) -> None:
        self._write(GARBAGE * 4)

    def silence(self, down_s: float) -> None:
        self.state.silent_until = time.monotonic() + down_s

    async def cable_pull(self, down_s: float) -> None:
        self.port.close()
        await asyncio.sleep(down_s)
        self.port.open()

    async def reboot(self, down_s: float, end: str) -> None:
        """Power cycle with the cable in (see the module's docstring); `end` triggers on
        the first frame written after boot."""
        frame = self.frame()
        self._write(frame[: len(frame) // 2])  # the power went mid-frame
        # Set at once, so no frame of the old state can slip out between the boot and
        # this task's next turn: nothing is written before off_until.
        self.state.off_until = self.state.booted_at = time.monotonic() + down_s
        self._pending.append(end)

    def write_frame(self) -> None:
        now_m = time.monotonic()
        if (self._line is None and not self.port.is_open) or now_m < max(self.state.silent_until, self.state.off_until):
            return
        self._write(self.frame())
        self.frames += 1
        now = time.time()
        for name in self._pending:
            self._on_trigger(name, now)
        self._pending.clear()

    async def run(self) -> None:
        if self.wired:
            self._line = SerialPortWriter(self.wired, _BAUD)
        else:
            self.port.open()
        period = 1 / self.spec.rate_hz
        fast = period < _MIN_TICK_S  # above 200 Hz: the frames due by the clock, several a loop turn
        loop = asyncio.get_running_loop()
        start, due = loop.time(), 0
        try:
            while True:
                self.port.drain_input()
                owed = int((loop.time() - start) / period) + 1 - due if fast else 1
                for _ in range(min(owed, _MAX_BURST)):
                    self.write_frame()
                due += owed
                await asyncio.sleep(_MIN_TICK_S if fast else period)
        finally:
            self.port.close()
            if self._line is not None:
                self._line.close()
