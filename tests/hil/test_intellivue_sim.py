"""The simulated monitor: its own vitals, the replayed real capture, and `hil simulate intellivue`."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.core.clock import FixedClock, MonotonicUTC
from appliance.core.model import DeviceEvent, Reading
from drivers.datex.codec import DatexCodec
from drivers.hl7.codec import Hl7Codec
from drivers.intellivue.codec import IntelliVueCodec, IntelliVueTiming
from drivers.medibus.codec import MedibusCodec
from drivers.serial.link import LinkTiming, SerialLink
from drivers.serial.transport import PortSettings
from hil.intellivue_sim import MonitorSim, MonitorState, load_capture
from hil.scenarios import vitals_at
from hil.simulate import SimConfig, simulate

CAPTURE = Path(__file__).parents[1] / "fixtures" / "intellivue" / "MPRawoutput1.raw"


def converse(sim: MonitorSim, codec: IntelliVueCodec, clock: FixedClock, seconds: float) -> list[DeviceEvent]:
    events = codec.opened()
    t = 0.0
    while t < seconds:
        events += codec.feed(sim.feed(codec.data_to_send(), t))
        clock.advance(0.1)
        t += 0.1
        events += codec.tick()
    return events


def test_capture_loads_as_accept_create_and_reply_groups():
    accept, create, groups = load_capture(CAPTURE)
    assert accept[0] == 0x0E and create[:4] == b"\xe1\x00\x00\x02"
    # 1,797 replies end in a final RORS; 361 of them are numeric snapshots in linked parts.
    assert len(groups) == 1797 and sum(len(g) > 1 for g in groups) == 361


def test_replayed_capture_answers_a_real_session():
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    sim = MonitorSim(lambda t: vitals_at("steady", t), datetime.now)
    sim.replay(CAPTURE)
    codec = IntelliVueCodec("mp", clock)
    events = converse(sim, codec, clock, 5.0)
    hr = [e for e in events if isinstance(e, Reading) and e.label == "0x4182"]
    assert hr and {r.value for r in hr} == {60.0}
    assert hr[0].device_time is not None and hr[0].device_time.date().isoformat() == "2021-04-22"
    assert sim.state is MonitorState.POLLABLE and codec.stats.frames_bad == 0


def test_monitor_ignores_polls_without_an_association():
    sim = MonitorSim(lambda t: vitals_at("steady", t), datetime.now)
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    polling = IntelliVueCodec("mp", clock)
    converse(sim, polling, clock, 2.0)
    sim.reboot()
    assert sim.feed(polling.data_to_send() or b"", 3.0) == b""
    clock.advance(1.0)
    polling.tick()
    assert sim.feed(polling.data_to_send(), 3.1) == b""  # polls to a rebooted monitor go unanswered


async def test_hil_simulate_intellivue_on_a_pty(tmp_path):
    path = tmp_path / "mp"
    cfg = SimConfig("intellivue", str(path), "tachycardia", baud=115200)
    sim_task = asyncio.create_task(simulate(replace(cfg, replay=str(CAPTURE)), duration_s=20))
    while not path.exists():
        await asyncio.sleep(0.01)
    events: list[DeviceEvent] = []
    codec = IntelliVueCodec("mp", MonotonicUTC(), timing=IntelliVueTiming(poll_period_s=0.5))
    link = SerialLink(PortSettings(str(path), baud=115200), codec, events.append, LinkTiming(stale_after_s=2.0))
    link_task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(10):
            while sum(isinstance(e, Reading) for e in events) < 48:
                await asyncio.sleep(0.05)
    finally:
        link_task.cancel()
        sim_task.cancel()
        await asyncio.gather(link_task, sim_task, return_exceptions=True)
    assert {e.value for e in events if isinstance(e, Reading) and e.label == "0x4182"} == {60.0}


@pytest.mark.parametrize(
    ("cfg", "make_codec", "settings"),
    [
        (
            SimConfig("datex", "", "steady", baud=19200),
            lambda: DatexCodec("s5", MonotonicUTC()),
            {"parity": "E", "rtscts": True},
        ),
        (
            SimConfig("medibus", "", "steady", "apollo", baud=9600),
            lambda: MedibusCodec("ap", MonotonicUTC()),
            {"parity": "E"},
        ),
        (SimConfig("hl7", "", "steady", rate_hz=2.0, baud=9600), lambda: Hl7Codec("h", MonotonicUTC()), {}),
    ],
)
async def test_hil_simulate_request_response_devices_on_a_pty(tmp_path, cfg, make_codec, settings):
    path = tmp_path / "dev"
    sim_task = asyncio.create_task(simulate(replace(cfg, port=str(path)), duration_s=20))
    while not path.exists():
        await asyncio.sleep(0.01)
    events: list[DeviceEvent] = []
    port = PortSettings(str(path), baud=cfg.baud, **settings)
    link = SerialLink(port, make_codec(), events.append, LinkTiming(stale_after_s=5.0))
    link_task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(12):
            while sum(isinstance(e, Reading) for e in events) < 5:
                await asyncio.sleep(0.05)
    finally:
        link_task.cancel()
        sim_task.cancel()
        await asyncio.gather(link_task, sim_task, return_exceptions=True)


def test_hil_cli_refuses_an_unknown_medibus_model(capsys):
    import argparse

    from hil.cli import run_hil

    args = argparse.Namespace(
        device="medibus", port="/tmp/x", scenario="steady", variant="evita9", data_format=8, device_tz="UTC",
        clock_offset=0.0, garbage_every=0.0, cable_pull_every=0.0, cable_down=3.0, rate=0.0, speed=1.0,
        replay="", reboot_every=0.0, reboot_down=15.0, duration=0.1,
    )  # fmt: skip
    assert run_hil(args) == 2
    assert "--variant: MEDIBUS model must be evita4, evitaxl, v500 or apollo" in capsys.readouterr().err
