"""GPIO alarm output: buzzer, red/yellow/cyan LEDs and a nurse-call relay.

`annunciate()` only records what must be signalled (cheap, on the alarm path);
the player task drives the lines by asking `rules.patterns` what each line
should be now and sleeping until the next change. Lines sit behind `Lines`:
`GpiodLines` is libgpiod's Python binding (gpiod >= 2), `MemoryLines` the twin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from appliance.core.model import AlarmEvent
from appliance.core.vocab import Priority
from rules.engine import Annunciation
from rules.outputs.base import OutputError
from rules.patterns import PatternConfig, buzzer_on, led_on, next_change

__all__ = ["GpioLineMap", "GpioOutput", "GpiodLines", "Lines", "MemoryLines"]

LINE_NAMES = ("buzzer", "led_red", "led_yellow", "led_cyan", "nurse_call")


@dataclass(frozen=True, slots=True)
class GpioLineMap:
    chip: str = "/dev/gpiochip0"
    buzzer: int = 17
    led_red: int = 27
    led_yellow: int = 22
    led_cyan: int = 23
    nurse_call: int = 24

    def offsets(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in LINE_NAMES}


class Lines(Protocol):
    def set(self, values: Mapping[str, bool]) -> None: ...

    def close(self) -> None: ...


class GpiodLines:
    def __init__(self, line_map: GpioLineMap) -> None:
        try:
            import gpiod
            from gpiod.line import Direction, Value
        except ImportError as exc:
            raise OutputError(f"gpiod binding not available: {exc}") from exc
        self._offsets = line_map.offsets()
        self._on, self._off = Value.ACTIVE, Value.INACTIVE
        settings = gpiod.LineSettings(direction=Direction.OUTPUT, output_value=Value.INACTIVE)
        try:
            self._request = gpiod.request_lines(
                line_map.chip, consumer="bedside-alarm", config={tuple(self._offsets.values()): settings}
            )
        except (OSError, ValueError) as exc:
            raise OutputError(f"{line_map.chip}: cannot request alarm lines: {exc}") from exc

    def set(self, values: Mapping[str, bool]) -> None:
        try:
            self._request.set_values({self._offsets[k]: self._on if v else self._off for k, v in values.items()})
        except OSError as exc:
            raise OutputError(f"gpio write failed: {exc}") from exc

    def close(self) -> None:
        self._request.release()


class MemoryLines:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = dict.fromkeys(LINE_NAMES, False)
        self.changes: list[tuple[float, str, bool]] = []
        self._clock = clock

    def set(self, values: Mapping[str, bool]) -> None:
        for name, value in values.items():
            if self.state[name] != value:
                self.state[name] = value
                self.changes.append((self._clock(), name, value))

    def close(self) -> None:
        return None


class GpioOutput:
    name = "gpio"

    def __init__(
        self, lines: Lines, patterns: PatternConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lines = lines
        self._cfg = patterns or PatternConfig()
        self._clock = clock
        self._current = Annunciation()
        self._audible_since = self._visual_since = clock()
        self._changed = asyncio.Event()

    def annunciate(self, annunciation: Annunciation) -> None:
        now = self._clock()
        if annunciation.audible != self._current.audible:
            self._audible_since = now  # a new priority starts its pattern from the top
        if annunciation.visual != self._current.visual:
            self._visual_since = now
        self._current = annunciation
        self.apply(now)
        self._changed.set()

    def event(self, event: AlarmEvent) -> None:
        return None

    def line_states(self, now: float) -> dict[str, bool]:
        a = self._current
        states = led_on(a.visual, now - self._visual_since, self._cfg)
        states["buzzer"] = buzzer_on(a.audible, now - self._audible_since, self._cfg)
        states["nurse_call"] = a.audible == Priority.HIGH
        return states

    def apply(self, now: float) -> None:
        self._lines.set(self.line_states(now))

    def self_test(self) -> None:
        # A short blip of every line: the installer sees and hears it at boot.
        self._lines.set(dict.fromkeys(LINE_NAMES, True))
        self._lines.set(dict.fromkeys(LINE_NAMES, False))

    async def run(self) -> None:
        while True:
            now = self._clock()
            self.apply(now)
            a = self._current
            wait = min(
                next_change(a.audible, now - self._audible_since, self._cfg),
                next_change(a.visual, now - self._visual_since, self._cfg),
            )
            self._changed.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            except TimeoutError:
                pass

    def close(self) -> None:
        self._lines.set(dict.fromkeys(LINE_NAMES, False))
        self._lines.close()
