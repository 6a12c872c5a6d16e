"""The bench's Pico emulator firmware (hil/pico/): the same scenarios and bytes as the
CPython simulators, and -- on the real MicroPython interpreter -- bytes the gateway's
own codecs decode to the scenario's values."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest
import serial

from appliance.core.clock import FixedClock
from appliance.core.model import Reading
from drivers.registry import make_codec
from hil.masimo_sim import VARIANTS, masimo_line
from hil.mpy_host import MpyBoard
from hil.nonin_sim import nonin_packet
from hil.scenarios import SCENARIOS, Vitals, vitals_at

PICO = Path(__file__).resolve().parents[3] / "hil" / "pico"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(PICO))  # emu_devices imports emu_scenarios by its flat name
    try:
        spec = importlib.util.spec_from_file_location(name, PICO / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(PICO))


scen = load("emu_scenarios")
dev = load("emu_devices")


def as_tuple(v: Vitals) -> tuple[float, float, float, bool, bool]:
    return (v.spo2, v.pulse, v.pi, v.sensor_off, v.low_perfusion)


def test_scenarios_are_hil_scenarios():
    assert set(scen.SCENARIOS) == set(SCENARIOS)
    for name in SCENARIOS:
        for tenth in range(0, 4000):
            t = tenth / 10
            assert scen.SCENARIOS[name](t) == as_tuple(vitals_at(name, t)), (name, t)


def test_bytes_are_the_cpython_simulators_bytes():
    when = datetime(2026, 3, 4, 5, 6, 7)
    for name in SCENARIOS:
        for t in (0.0, 31.0, 95.5, 125.0, 170.0):
            v = vitals_at(name, t)
            for variant in VARIANTS:
                assert dev.masimo_line(variant, (2026, 3, 4, 5, 6, 7), as_tuple(v)) == masimo_line(variant, when, v)
            for fmt in (2, 7, 8):
                assert dev.nonin_packet(fmt, as_tuple(v), pleth_phase=5) == nonin_packet(fmt, v, pleth_phase=5)


@pytest.mark.parametrize(
    ("device", "protocol", "labels", "period_s"),
    [
        ("masimo", "masimo", ("SPO2", "BPM", "PI"), 1.0),
        ("nonin", "nonin-2", ("SPO2", "HR"), 0.333),
    ],
)
def test_the_emulators_bytes_decode_to_the_scenarios_values(device, protocol, labels, period_s):
    speed, scenario = 30, "desaturation"  # 30 scenario seconds per message second: values move
    overrides = {"DEVICE": device, "SCENARIO": scenario, "SPEED": speed}
    with MpyBoard(PICO, main="emu_main", config="emu_config", overrides=overrides) as board:
        board.wait_event("boot")
        with serial.Serial(board.port, 9600, timeout=0.2) as port:
            data = b""
            deadline = time.monotonic() + 3.2
            while time.monotonic() < deadline:
                data += port.read(4096)
    codec = make_codec(protocol, "pico", FixedClock(datetime(2026, 1, 1)))
    by_seq: dict[int, dict[str, float | None]] = defaultdict(dict)
    for event in codec.feed(data):
        if isinstance(event, Reading) and event.label in labels:
            by_seq[event.seq][event.label] = event.value
    assert codec.stats.frames_bad == 0
    assert len(by_seq) >= 3, (len(data), by_seq)
    for seq, values in by_seq.items():
        v = vitals_at(scenario, (seq - 1) * round(period_s * 1000) * speed / 1000)
        expect = {"SPO2": v.spo2, "BPM": v.pulse, "HR": v.pulse, "PI": v.pi}
        assert values == {k: expect[k] for k in labels}, (seq, values, v)
    assert len({tuple(v.values()) for v in by_seq.values()}) >= 2, "the scenario moved"
