"""A family registered in a test is simulated by the bench without an edit to hil/.

The toy family of tests/drivers/test_toy_family.py gets a simulator hook pointing
here; registered with `registry.register()`, it is in `bedside hil simulate`'s
choices, in the demo's device list and config, and its readings reach the demo's
live view and records through the demo's own path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from typing import Any

import pytest

from appliance.cli import build_parser
from drivers import registry
from drivers.family import DeviceFamily
from hil.bench import DemoDevice, demo_devices
from hil.cli import sim_config
from hil.demo import demo_config, run_demo
from hil.scenarios import vitals_at
from hil.simulate import LineSim, SimConfig, run_periodic, simulate
from tests.drivers.test_toy_family import TOY

# The demo's devices before any family is added: the order the live view and config keep.
BUILT_IN = (
    "masimo-1", "nonin-1", "masimo-2", "intellivue-1", "s5-1", "evita-1", "hl7-1", "hr-strap-1", "glucose-1",
)  # fmt: skip


class ToySim(LineSim):
    """`TOY HR=<pulse>` once a second, the scenario's pulse."""

    demo = (DemoDevice("toy-1", "toy", "ICU-T", SimConfig("toy", "", "tachycardia", time_scale=3)),)

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        def line(t: float, n: int) -> bytes:
            return f"TOY HR={vitals_at(cfg.scenario, t).pulse:.0f}\n".encode()

        return run_periodic(cfg, line, duration_s)


def toy_simulator() -> LineSim:
    return ToySim()


@pytest.fixture
def toy() -> Iterator[DeviceFamily]:
    with registry.register(replace(TOY, simulator=f"{__name__}:toy_simulator")) as family:
        yield family


def test_the_demo_lists_the_built_in_families_in_bed_order():
    assert tuple(device.device_id for _, device in demo_devices()) == BUILT_IN


def test_the_demo_lists_and_configures_a_registered_family(toy, tmp_path):
    assert tuple(device.device_id for _, device in demo_devices()) == (*BUILT_IN, "toy-1")
    text = demo_config(tmp_path)
    toy_table = text.split('id = "toy-1"\n', 1)[1].split("[[devices]]", 1)[0]
    assert toy_table == (
        f'protocol = "toy"\nport = "{tmp_path / "toy-1"}"\nbaud = 9600\nstale_after_s = 3.0\nbed_id = "ICU-T"\n'
    )


def test_hil_simulate_offers_a_registered_family_only_while_it_is(tmp_path):
    argv = ["hil", "simulate", "toy", "--port", str(tmp_path / "toy")]
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    with registry.register(replace(TOY, simulator=f"{__name__}:toy_simulator")):
        assert sim_config(build_parser().parse_args(argv)).device == "toy"


async def test_hil_simulate_streams_a_registered_family(toy, tmp_path):
    path = tmp_path / "toy"
    args = build_parser().parse_args(["hil", "simulate", "toy", "--port", str(path), "--scenario", "tachycardia"])
    task = asyncio.create_task(simulate(sim_config(args), duration_s=1.2))
    while not path.exists():
        await asyncio.sleep(0.01)
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    data = b""
    try:
        while not task.done():
            await asyncio.sleep(0.05)
            with contextlib.suppress(BlockingIOError, OSError):
                data += os.read(fd, 4096)
    finally:
        os.close(fd)
    await task
    assert data.startswith(b"TOY HR=80\n")


@pytest.mark.integration
def test_the_demo_reads_a_registered_family(toy, tmp_path, capsys):
    assert run_demo(duration_s=6, workdir=str(tmp_path)) == 0
    final = capsys.readouterr().out.rsplit("Bedside Gateway ", 1)[1]
    row = next(line for line in final.splitlines() if "ICU-T" in line)
    assert "toy-1" in row and "/min" in row
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert any(r.get("device_id") == "toy-1" and r.get("metric") == "MDC_ECG_HEART_RATE" for r in records)
