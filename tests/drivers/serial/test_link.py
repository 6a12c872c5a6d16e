"""Link glue against the in-memory stream: reconnect, stale, event order."""

import asyncio
from typing import Any

from appliance.core.model import Reading, TechnicalEvent
from drivers.masimo.codec import MasimoCodec
from drivers.serial.link import LinkTiming, SerialLink
from drivers.serial.transport import MemoryStream, PortSettings, PortUnavailable

LINE = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n"
FAST = LinkTiming(stale_after_s=0.1, reopen_min_s=0.01, reopen_max_s=0.02)


class Opener:
    """Fails `fail_first` times, then hands out fresh memory streams."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.streams: list[MemoryStream] = []
        self.attempts = 0

    async def __call__(self, settings: PortSettings) -> MemoryStream:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            raise PortUnavailable(f"{settings.port}: No such file or directory")
        stream = MemoryStream()
        self.streams.append(stream)
        return stream


async def wait_for(predicate, timeout=2.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def kinds(events):
    return [(e.kind, e.active) for e in events if isinstance(e, TechnicalEvent)]


async def test_outage_reported_once_then_connect_and_decode():
    events: list[Any] = []
    opener = Opener(fail_first=5)
    link = SerialLink(PortSettings("/dev/x"), MasimoCodec("m1"), events.append, FAST, opener)
    task = asyncio.create_task(link.run())
    try:
        await wait_for(lambda: opener.streams)
        opener.streams[0].push(LINE)
        await wait_for(lambda: any(isinstance(e, Reading) for e in events))
        assert kinds(events)[:2] == [("disconnected", True), ("connected", True)]
        assert opener.attempts == 6
    finally:
        task.cancel()


async def test_cable_pull_reconnects_and_keeps_decoding():
    events: list[Any] = []
    opener = Opener()
    link = SerialLink(PortSettings("/dev/x"), MasimoCodec("m1"), events.append, FAST, opener)
    task = asyncio.create_task(link.run())
    try:
        await wait_for(lambda: opener.streams)
        opener.streams[0].push(LINE[:30])  # half a line, then the cable goes
        opener.streams[0].vanish()
        await wait_for(lambda: len(opener.streams) == 2)
        assert opener.streams[0].closed
        opener.streams[1].push(LINE)
        await wait_for(lambda: any(isinstance(e, Reading) for e in events))
        assert ("disconnected", True) in kinds(events)
        assert kinds(events).count(("connected", True)) == 2
    finally:
        task.cancel()


async def test_stale_then_fresh():
    events: list[Any] = []
    opener = Opener()
    link = SerialLink(PortSettings("/dev/x"), MasimoCodec("m1"), events.append, FAST, opener)
    task = asyncio.create_task(link.run())
    try:
        await wait_for(lambda: ("stale", True) in kinds(events))
        await asyncio.sleep(0.25)  # still silent: no repeated stale events
        assert kinds(events).count(("stale", True)) == 1
        opener.streams[0].push(LINE)
        await wait_for(lambda: ("stale", False) in kinds(events))
    finally:
        task.cancel()
