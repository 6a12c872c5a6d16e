"""The bench's oximeters on a real pty: a device reboot with the cable in, byte by byte.

Invariants: while the power is off the line carries only the head of the frame that
was on the wire (no whole frame), the step's end comes with the first frame after
boot and not before `down_s`, that frame is the power-on state (no reading yet), and
the gateway's own codec resyncs past the cut frame to the steered values again."""

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.masimo.codec import MasimoCodec
from drivers.nonin.codec import NoninCodec
from hil.suite import devices
from hil.suite.devices import BenchDevice
from hil.suite.spec import Device

DOWN_S = 0.4


class Line:
    """The gateway's end of the pty: every byte with the monotonic time it was read."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        self.chunks: list[tuple[float, bytes]] = []

    def read(self) -> None:
        try:
            while data := os.read(self.fd, 4096):
                self.chunks.append((time.monotonic(), data))
        except BlockingIOError:
            pass

    def between(self, t0: float, t1: float) -> bytes:
        return b"".join(d for t, d in self.chunks if t0 <= t < t1)


async def _pump(line: Line, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        line.read()
        await asyncio.sleep(0.005)


def _into(triggers: dict[str, float]) -> Callable[[str, float], None]:
    def record(name: str, t: float) -> None:
        triggers.setdefault(name, t)

    return record


def _decode(family: str, data: bytes) -> list[DeviceEvent]:
    codec = MasimoCodec("d") if family == "masimo" else NoninCodec("d", 8)
    return codec.feed(data)


@pytest.mark.parametrize("family", ["masimo", "nonin"])
async def test_a_reboot_cuts_the_frame_goes_silent_and_comes_back_in_the_power_on_state(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "BOOT_NO_READING_S", 0.3)  # the first 0.3 s after boot: no reading
    triggers: dict[str, float] = {}
    dev = BenchDevice(Device("d", family, "B", rate_hz=20.0), tmp_path, _into(triggers))
    task = asyncio.create_task(dev.run())
    try:
        while not (tmp_path / "d").exists():
            await asyncio.sleep(0.01)
        line = Line(tmp_path / "d")
        await _pump(line, 0.3)
        line.read()  # what was written before the power went (no await until the cut)
        off = time.monotonic()
        off_wall = time.time()
        await dev.reboot(DOWN_S, "boot/end")
        await _pump(line, DOWN_S + 0.8)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    frame_len = len(dev.frame())
    # Off: only the head of the frame that was on the wire (half of it), nothing more.
    during = line.between(off, off + DOWN_S - 0.02)
    assert 0 < len(during) < frame_len
    # Back: the end is marked by the first frame after boot, not before down_s.
    assert triggers["boot/end"] - off_wall >= DOWN_S - 0.01
    after = line.between(off + DOWN_S - 0.02, float("inf"))
    events = _decode(family, line.between(0, off) + during + after)
    assert [e.kind for e in events if isinstance(e, TechnicalEvent) and e.kind == "bad_frame"] == ["bad_frame"]
    spo2 = [e for e in _decode(family, during + after) if isinstance(e, Reading) and e.label == "SPO2"]
    # The first frames after boot carry no reading; then the steered values again.
    assert spo2[0].value is None and ("pulse_search" if family == "masimo" else "missing") in spo2[0].flags
    assert spo2[-1].value == 97.0 and not {"pulse_search", "missing"} & spo2[-1].flags
