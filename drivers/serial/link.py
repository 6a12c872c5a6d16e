"""One device link: open the port, pump bytes through the codec, survive the cable.

Emits `connected`, `disconnected` (once per outage, not per retry), `stale`
(no bytes for `stale_after_s`; inactive again when bytes return), and whatever the
codec emits. Events are handed to `emit` synchronously in the loop turn in which
the bytes arrived, so the alarm path sees them without waiting on anything.
The codec lives as long as the link, so its frame sequence and counters survive
reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from appliance.model import DeviceEvent, TechnicalEvent
from drivers.backoff import Backoff
from drivers.codec import Codec
from drivers.serial.transport import (
    ByteStream,
    PortSettings,
    PortUnavailable,
    PortVanished,
    SerialStream,
    TransportError,
)

__all__ = ["LinkTiming", "Opener", "SerialLink", "open_serial"]

Opener = Callable[[PortSettings], Awaitable[ByteStream]]


async def open_serial(settings: PortSettings) -> ByteStream:
    return SerialStream.open(settings)


@dataclass(frozen=True, slots=True)
class LinkTiming:
    stale_after_s: float = 5.0
    reopen_min_s: float = 0.2
    reopen_max_s: float = 10.0


class SerialLink:
    def __init__(
        self,
        settings: PortSettings,
        codec: Codec,
        emit: Callable[[DeviceEvent], None],
        timing: LinkTiming = LinkTiming(),
        opener: Opener = open_serial,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self._emit = emit
        self._timing = timing
        self._opener = opener
        self._backoff = Backoff(timing.reopen_min_s, timing.reopen_max_s)
        self.connected = False

    def _event(self, kind: str, active: bool = True, detail: str = "") -> None:
        self._emit(TechnicalEvent(self.codec.device_id, kind, active=active, detail=detail))

    async def run(self) -> None:
        """Runs until cancelled; never returns on port trouble."""
        outage_reported = False
        while True:
            try:
                stream = await self._opener(self.settings)
            except PortUnavailable as exc:
                if not outage_reported:
                    self._event("disconnected", detail=str(exc))
                    outage_reported = True
                await asyncio.sleep(self._backoff.next())
                continue
            self._backoff.reset()
            outage_reported = False
            self.connected = True
            self._event("connected", detail=self.settings.port)
            try:
                await self._pump(stream)
            except (PortVanished, TransportError) as exc:
                self._event("disconnected", detail=str(exc))
                outage_reported = True
            finally:
                self.connected = False
                stream.close()
            await asyncio.sleep(self._backoff.next())

    async def _pump(self, stream: ByteStream) -> None:
        stale = False
        while True:
            try:
                async with asyncio.timeout(self._timing.stale_after_s):
                    data = await stream.read()
            except TimeoutError:
                if not stale:
                    stale = True
                    self._event("stale", detail=f"no bytes for {self._timing.stale_after_s:g} s")
                continue
            if not data:
                continue
            if stale:
                stale = False
                self._event("stale", active=False)
            for event in self.codec.feed(data):
                self._emit(event)
            out = self.codec.data_to_send()
            if out:
                stream.write(out)
