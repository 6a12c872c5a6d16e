"""Codecs own no clock: the gateway hands its own to every codec it makes, so a
`FixedClock` given to the gateway drives codec timers and HL7 ACK timestamps."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from appliance.config import parse_config
from appliance.core.clock import FixedClock
from appliance.core.model import TechnicalEvent
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from drivers.hl7.mllp import frame
from drivers.serial.transport import MemoryStream, PortSettings
from rules.outputs import MemoryOutput

START = datetime(2031, 7, 4, 9, 30, 15, tzinfo=UTC)
MSG = (
    b"MSH|^~\\&|S|F|||20310704093000||ORU^R01^ORU_R01|C1|P|2.6|||AL|NE\rOBR|1|||x|||20310704093000\r"
    b"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|262688^MDC_DIM_PERCENT^MDC\r"
)


def _config(tmp_path, device: str) -> Any:
    return parse_config(f'[gateway]\nbed_id = "B"\nregistry_path = "{tmp_path / "r.json"}"\n[[devices]]\n{device}')


async def test_an_hl7_ack_through_the_gateway_carries_the_gateways_fixed_time(tmp_path):
    master, slave = os.openpty()
    device = f'id = "h1"\nprotocol = "hl7"\nport = "{os.ttyname(slave)}"\nexclusive = false\n'
    gw = Gateway(_config(tmp_path, device), clock=FixedClock(START), notifier=Notifier({}), outputs=[MemoryOutput("m")])
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    loop = asyncio.get_running_loop()
    ack = b""
    try:
        async with asyncio.timeout(5):
            while not gw.links["h1"].connected:
                await asyncio.sleep(0.02)
            os.write(master, frame(MSG))
            while b"\x1c" not in ack:
                ack += await loop.run_in_executor(None, os.read, master, 4096)
    finally:
        stop.set()
        await runner
        os.close(master)
        os.close(slave)
    msh = ack.split(b"\r")[0].lstrip(b"\x0b").split(b"|")
    assert msh[6] == b"20310704093015+0000"  # MSH-7: the injected clock's time, not the wall clock's


async def test_a_codec_timer_runs_on_the_gateways_clock(tmp_path):
    # A silent S/5 is asked again after 15 s of the *gateway's* clock: the fixed clock
    # jumps 16 s and the re-request follows within a tick, no real 15 s waited.
    clock = FixedClock(START)
    streams: dict[str, MemoryStream] = {}

    async def opener(settings: PortSettings) -> MemoryStream:
        streams[settings.port] = MemoryStream()
        return streams[settings.port]

    device = 'id = "s5"\nprotocol = "datex"\nport = "/dev/fake-s5"\nbaud = 19200\nparity = "E"\nrtscts = true\n'
    gw = Gateway(_config(tmp_path, device), clock=clock, opener=opener, notifier=Notifier({}), outputs=[])
    seen: list[Any] = []
    gw.subscribers.append(seen.append)
    codec: Any = gw.links["s5"].codec  # type: ignore[attr-defined]
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(5):
            while codec.requests_sent < 1:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.6)  # a tick or more on an unmoved clock: nothing due
            assert codec.requests_sent == 1
            clock.advance(16.0)
            while codec.requests_sent < 2:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await runner
    lost = [r for r in seen if isinstance(r, TechnicalEvent) and r.kind == "session_lost"]
    assert lost and lost[0].time == START.replace(second=31)  # stamped with the same clock
