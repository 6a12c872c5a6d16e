"""One device link: open the port, pump bytes through the codec, survive the cable.

Emits `connected`, `disconnected` (once per outage, not per retry), `stale`
(no bytes for `stale_after_s`; inactive again when bytes return), and whatever the
codec emits. A session codec (IntelliVue) is told when the port opens, is lost or
is shut down (it sends its release then), and is ticked every `tick_s` so its
polls and timers run while the device is quiet. Events are handed to `emit` synchronously in the loop turn in which
the bytes arrived, so the alarm path sees them without waiting on anything.
The codec lives as long as the link, so its frame sequence and counters survive
reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from appliance.core.backoff import Backoff
from appliance.core.model import DeviceEvent, TechnicalEvent
from drivers.codec import Codec, SessionCodec
from drivers.devices import LinkTiming
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
_DEFAULT_TIMING: Final = LinkTiming()


async def open_serial(settings: PortSettings) -> ByteStream:
    return SerialStream.open(settings)


class SerialLink:
    def __init__(
        self,
        settings: PortSettings,
        codec: Codec,
        emit: Callable[[DeviceEvent], None],
        timing: LinkTiming = _DEFAULT_TIMING,
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
            session = self.codec if isinstance(self.codec, SessionCodec) else None
            try:
                if session is not None:
                    self._deliver(session.opened(), stream)
                await self._pump(stream, session)
            except (PortVanished, TransportError) as exc:
                self._event("disconnected", detail=str(exc))
                outage_reported = True
                if session is not None:
                    self._deliver(session.lost(), None)
            except asyncio.CancelledError:
                if session is not None:
                    session.closing()  # say goodbye to the device before the port closes
                    self._deliver([], stream)
                raise
            finally:
                self.connected = False
                stream.close()
            await asyncio.sleep(self._backoff.next())

    def _deliver(self, events: list[DeviceEvent], stream: ByteStream | None) -> None:
        for event in events:
            self._emit(event)
        out = self.codec.data_to_send()
        if out and stream is not None:
            stream.write(out)

    async def _pump(self, stream: ByteStream, session: SessionCodec | None) -> None:
        loop = asyncio.get_running_loop()
        stale_after = self._timing.stale_after_s
        wait_s = stale_after if session is None else min(stale_after, session.tick_s)
        stale = False
        last_data = loop.time()
        while True:
            try:
                async with asyncio.timeout(wait_s):
                    data = await stream.read()
            except TimeoutError:
                data = b""
            now = loop.time()
            if data:
                last_data = now
                if stale:
                    stale = False
                    self._event("stale", active=False)
            elif not stale and now - last_data >= stale_after:
                stale = True
                self._event("stale", detail=f"no bytes for {stale_after:g} s")
            events = self.codec.feed(data) if data else []
            if session is not None:
                events += session.tick()
            self._deliver(events, stream)
