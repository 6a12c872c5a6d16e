"""The whole IntelliVue session over a pseudo-terminal at 115200 8N1, against the simulated
monitor: association, polling, a monitor that goes silent, a reboot in the middle of a poll
reply, a cable pull, and the release on shutdown."""

import asyncio
import os
import termios
from datetime import datetime

from appliance.core.clock import MonotonicUTC
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.intellivue.codec import IntelliVueCodec, IntelliVueTiming, SessionState
from drivers.serial.link import LinkTiming, SerialLink
from drivers.serial.transport import PortSettings
from hil.intellivue_bench import MonitorBench
from hil.intellivue_sim import MonitorSim
from hil.scenarios import vitals_at
from hil.simulate import PtyPort
from tests.integration.helpers import until

TIMING = IntelliVueTiming(
    poll_period_s=0.5, keepalive_after_s=0.5, silence_timeout_s=1.5, assoc_retry_s=1.0, mds_timeout_s=2.0
)


def technical(events: list[DeviceEvent], kind: str) -> list[bool]:
    return [e.active for e in events if isinstance(e, TechnicalEvent) and e.kind == kind]


def readings(events: list[DeviceEvent]) -> int:
    return sum(isinstance(e, Reading) for e in events)


async def test_session_survives_silence_reboot_and_cable_pull_then_releases(tmp_path):
    path = tmp_path / "mp70"
    port = PtyPort(path, 115200)
    port.open()
    sim = MonitorSim(lambda t: vitals_at("steady", t), datetime.now)
    bench = MonitorBench(sim, port)
    bench_task = asyncio.create_task(bench.run())
    events: list[DeviceEvent] = []
    codec = IntelliVueCodec("mp70", MonotonicUTC(), timing=TIMING)
    link = SerialLink(
        PortSettings(str(path), baud=115200),
        codec,
        events.append,
        LinkTiming(stale_after_s=5.0, reopen_min_s=0.1, reopen_max_s=0.3),
    )
    link_task = asyncio.create_task(link.run())
    try:
        # Association, MDS create, polling; the port really is 115200 8N1 without handshake.
        await until(lambda: readings(events) >= 30)
        assert codec.state is SessionState.POLLING and sim.associations == 1
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            iflag, _, cflag, _, ispeed, ospeed, _ = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        assert ispeed == ospeed == termios.B115200
        assert cflag & termios.CSIZE == termios.CS8 and not cflag & (termios.PARENB | termios.CSTOPB)
        assert not cflag & termios.CRTSCTS and not iflag & (termios.IXON | termios.IXOFF)

        # 1. The monitor hangs: keep-alives, then re-association once it answers again.
        bench.go_silent(2.5)
        await until(lambda: technical(events, "session_lost") == [True])
        await until(lambda: technical(events, "session_lost") == [True, False])
        assert sim.associations == 2
        before = readings(events)
        await until(lambda: readings(events) >= before + 13)

        # 2. Reboot in the middle of a poll reply: half a frame, then a monitor with no association.
        bad_before = codec.stats.frames_bad
        bench.reboot_mid_poll(2.0)
        await until(lambda: bench.cut_frames == 1)
        await until(lambda: technical(events, "session_lost") == [True, False, True, False])
        assert sim.associations == 3 and codec.stats.frames_bad > bad_before
        before = readings(events)
        await until(lambda: readings(events) >= before + 13)

        # 3. Cable pull: the port vanishes and comes back; a fresh association follows.
        await bench.pull_cable(1.0)
        await until(lambda: technical(events, "disconnected") == [True])
        await until(lambda: sim.associations == 4)
        before = readings(events)
        await until(lambda: readings(events) >= before + 13)
    finally:
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
    # 4. Shutdown releases the association before the port closes.
    await until(lambda: sim.releases == 1, timeout_s=3.0)
    bench_task.cancel()
    await asyncio.gather(bench_task, return_exceptions=True)
    port.close()
    assert codec.transitions[-1][2] is SessionState.RELEASING
