"""Event-loop lag monitor: the loop that carries the alarm path must keep turning.

Every input is handled on one asyncio loop, in the turn its bytes arrive, and
the alarm engine's timers tick on the same loop. If anything holds the loop (a
parser that is not linear in its input, a synchronous disk call), alarms are
late for every bed device at once. This task sleeps a short interval and
measures how late it wakes; beyond `bound_s` it raises one `loop_lag` technical
event (active), which ends after `clear_after_s` without a late wake. The worst
lag seen is kept for the status line and the closing log line.

The decision core (`LagMonitor.observe`) is pure; `run` is its clock and sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from appliance.core.model import TechnicalEvent
from appliance.core.vocab import TechnicalKind

__all__ = ["LagMonitor", "LagSettings"]

DEVICE_ID: Final = "gateway"


@dataclass(frozen=True, slots=True)
class LagSettings:
    # 50 ms wakes cost nothing measurable and resolve a stall well below the bound.
    interval_s: float = 0.05
    # The alarm engine ticks every 100 ms; a quarter second late is a delay an
    # operator should know about (IEC 60601-1-8 alarm-condition delay budgets
    # are counted in seconds, so this catches trouble well before them).
    bound_s: float = 0.25
    clear_after_s: float = 5.0


class LagMonitor:
    def __init__(self, settings: LagSettings = LagSettings()) -> None:
        self.settings = settings
        self.worst_s = 0.0
        self.late_wakes = 0
        self.active = False
        self._last_late_s = 0.0

    def observe(self, lag_s: float, now_s: float) -> TechnicalEvent | None:
        """One wake `lag_s` late at monotonic time `now_s`: the event to report, if any."""
        self.worst_s = max(self.worst_s, lag_s)
        bound = self.settings.bound_s
        if lag_s > bound:
            self.late_wakes += 1
            self._last_late_s = now_s
            if not self.active:
                self.active = True
                return TechnicalEvent(
                    DEVICE_ID, TechnicalKind.LOOP_LAG, detail=f"event loop {lag_s * 1000:.0f} ms late"
                )
            return None
        if self.active and now_s - self._last_late_s >= self.settings.clear_after_s:
            self.active = False
            return TechnicalEvent(
                DEVICE_ID,
                TechnicalKind.LOOP_LAG,
                active=False,
                detail=f"worst {self.worst_s * 1000:.0f} ms late so far",
            )
        return None

    async def run(
        self,
        report: Callable[[TechnicalEvent], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        interval = self.settings.interval_s
        while True:
            before = clock()
            await sleep(interval)
            after = clock()
            event = self.observe(max(0.0, after - before - interval), after)
            if event is not None:
                report(event)
