"""GE S/5 over a pseudo-terminal at 19200 8E1 with RTS/CTS: request, displayed values,
a monitor reboot (silence -> request again), a cable pull, and the stop request on shutdown."""

import asyncio
import os
import termios
from datetime import datetime

from appliance.core.clock import MonotonicUTC
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.datex.codec import DatexCodec, DatexTiming
from drivers.serial.link import LinkTiming, SerialLink
from drivers.serial.transport import PortSettings, SerialStream
from hil.datex_sim import S5Sim
from hil.intellivue_bench import MonitorBench
from hil.scenarios import vitals_at
from hil.simulate import PtyPort
from tests.integration.helpers import until


def records(events: list[DeviceEvent]) -> int:
    return len({e.seq for e in events if isinstance(e, Reading)})


def lost(events: list[DeviceEvent]) -> list[bool]:
    return [e.active for e in events if isinstance(e, TechnicalEvent) and e.kind == "session_lost"]


async def test_s5_session_over_a_pty(tmp_path):
    path = tmp_path / "s5"
    port = PtyPort(path, 19200)
    port.open()
    sim = S5Sim(lambda t: vitals_at("steady", t), datetime.now)
    bench = MonitorBench(sim, port)
    bench_task = asyncio.create_task(bench.run())
    events: list[DeviceEvent] = []
    codec = DatexCodec("s5", MonotonicUTC(), timing=DatexTiming(interval_s=5, silence_timeout_s=6.0, tick_s=0.2))
    settings = PortSettings(str(path), baud=19200, parity="E", rtscts=True)
    opened: list[SerialStream] = []

    async def opener(port_settings: PortSettings) -> SerialStream:
        stream = SerialStream.open(port_settings)
        opened.append(stream)
        return stream

    timing = LinkTiming(stale_after_s=8.0, reopen_min_s=0.1, reopen_max_s=0.3)
    link = SerialLink(settings, codec, events.append, timing, opener)
    link_task = asyncio.create_task(link.run())
    try:
        await until(lambda: records(events) >= 1)
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            _, _, cflag, _, ispeed, _, _ = termios.tcgetattr(fd)
        finally:
            os.close(fd)
        assert ispeed == termios.B19200 and cflag & termios.CSIZE == termios.CS8 and not cflag & termios.CSTOPB
        assert cflag & termios.CRTSCTS
        # Linux ptys drop PARENB from termios (they have no parity); the port was opened with it.
        assert [(s._serial.parity, s._serial.rtscts) for s in opened] == [("E", True)]

        # The monitor reboots and forgets the request: after the silence bound it is asked again.
        sim.reboot()
        await until(lambda: lost(events) == [True, False], timeout_s=12)
        assert sim.requests == 2

        # Cable pull: a new request on reconnect, values again.
        before = records(events)
        await bench.pull_cable(0.5)
        await until(lambda: sim.requests == 3)
        await until(lambda: records(events) > before)
        values = {e.label: e.value for e in events if isinstance(e, Reading)}
        assert values["ART_SYS"] is not None and values["SPO2"] is not None
    finally:
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
    await until(lambda: sim.stops == 1, timeout_s=3.0)  # stop request reached the monitor
    bench_task.cancel()
    await asyncio.gather(bench_task, return_exceptions=True)
    port.close()
