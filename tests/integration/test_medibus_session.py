"""Dräger MEDIBUS over a pseudo-terminal at the Evita 4 profile (19200 8E1, no XON/XOFF):
initialisation with device-initiated commands, polling through realtime bytes, a device
that goes silent (re-ICC), a cable pull, and STOP on shutdown."""

import asyncio
import os
import termios
from datetime import datetime

from appliance.core.clock import MonotonicUTC
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.medibus.codec import MedibusCodec, MedibusState
from drivers.serial.link import LinkTiming, SerialLink
from drivers.serial.transport import PortSettings
from hil.intellivue_bench import MonitorBench
from hil.medibus_sim import DraegerSim
from hil.scenarios import vitals_at
from hil.simulate import PtyPort
from tests.integration.helpers import until


def readings(events: list[DeviceEvent]) -> int:
    return sum(isinstance(e, Reading) for e in events)


def lost(events: list[DeviceEvent]) -> list[bool]:
    return [e.active for e in events if isinstance(e, TechnicalEvent) and e.kind == "session_lost"]


async def test_evita4_session_over_a_pty(tmp_path):
    path = tmp_path / "evita"
    port = PtyPort(path, 19200)
    port.open()
    sim = DraegerSim("evita4", lambda t: vitals_at("steady", t), datetime.now, realtime=True)
    bench = MonitorBench(sim, port)
    bench_task = asyncio.create_task(bench.run())
    events: list[DeviceEvent] = []
    codec = MedibusCodec("evita", MonotonicUTC())
    settings = PortSettings(str(path), baud=19200, parity="E")
    link = SerialLink(settings, codec, events.append, LinkTiming(stale_after_s=5.0, reopen_min_s=0.1, reopen_max_s=0.3))
    link_task = asyncio.create_task(link.run())
    try:
        await until(lambda: readings(events) >= 16)
        assert codec.state is MedibusState.ACTIVE and sim.host_identity is not None
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            iflag, _, _, _, ispeed, _, _ = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        assert ispeed == termios.B19200 and not iflag & (termios.IXON | termios.IXOFF)  # DC1/DC3 reach us

        # The ventilator stops talking: after 3 s the gateway re-initialises with ICC.
        bench.go_silent(4.0)
        await until(lambda: lost(events) == [True])
        await until(lambda: lost(events) == [True, False])
        before = readings(events)
        await until(lambda: readings(events) > before)

        # Cable pull: the port vanishes; on its return the session starts over.
        icc_before = sim.requests.count(0x51)
        await bench.pull_cable(0.5)
        await until(lambda: any(isinstance(e, TechnicalEvent) and e.kind == "disconnected" for e in events))
        await until(lambda: sim.requests.count(0x51) > icc_before)  # our ICC after reconnecting
        before = readings(events)
        await until(lambda: readings(events) > before)
    finally:
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
    await until(lambda: sim.stopped == 1, timeout_s=3.0)  # STOP reached the device
    bench_task.cancel()
    await asyncio.gather(bench_task, return_exceptions=True)
    port.close()
