"""What every sans-IO device codec looks like, and the small helpers they share.

A codec turns bytes into `DeviceEvent`s and never does I/O: no asyncio, no serial,
no clock. The transport glue feeds it and sends whatever it asks to send.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from appliance.core.model import DeviceEvent, TechnicalEvent

__all__ = ["Codec", "CodecStats", "ConditionTracker", "SessionCodec", "drain"]


@dataclass(slots=True)
class CodecStats:
    frames_ok: int = 0
    frames_bad: int = 0
    bytes_in: int = 0


class Codec(Protocol):
    """Bytes in, events out. `data_to_send` drains bytes the codec wants written."""

    device_id: str
    stats: CodecStats

    def feed(self, data: bytes) -> list[DeviceEvent]: ...

    def data_to_send(self) -> bytes: ...


def drain(out: bytearray) -> bytes:
    """Hand over and clear a codec's pending output (its `data_to_send`)."""
    data = bytes(out)
    out.clear()
    return data


@runtime_checkable
class SessionCodec(Codec, Protocol):
    """A codec that holds a session with the device (association, polls, keep-alives).

    The link tells it when the port opens and closes and calls `tick` at least
    every `tick_s` seconds; the codec reads time from its own injected clock, so
    its timers are tested without waiting.
    """

    tick_s: float

    def opened(self) -> list[DeviceEvent]: ...

    def tick(self) -> list[DeviceEvent]: ...

    def closing(self) -> None: ...

    def lost(self) -> list[DeviceEvent]: ...


class ConditionTracker:
    """Turns per-frame condition sets into edge-triggered technical events.

    Devices repeat `sensor off` or `low battery` in every frame; the alarm engine
    wants one event when the condition starts and one when it ends.
    """

    def __init__(self, device_id: str, kinds: Iterable[str]) -> None:
        self._device_id = device_id
        self._kinds = frozenset(kinds)
        self._active: set[str] = set()

    def update(self, present: Iterable[str]) -> list[TechnicalEvent]:
        now = self._kinds.intersection(present)
        events = [TechnicalEvent(self._device_id, kind, active=True) for kind in sorted(now - self._active)]
        events += [TechnicalEvent(self._device_id, kind, active=False) for kind in sorted(self._active - now)]
        self._active = set(now)
        return events
