"""Condition tests for physiological rules: limits with hysteresis, windows.

Pure functions over values and sample windows; the engine owns the state.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Final

from rules.spec import Rule

__all__ = ["MAX_WINDOW_SAMPLES", "Window", "Windows", "limit_condition", "window_condition"]

# Per (bed, metric, span); at 3 values/s an hour is 10 800 samples. Overflow
# policy: the oldest sample is dropped.
MAX_WINDOW_SAMPLES: Final = 12_000
# The running sum is recomputed exactly after this many removals, so float
# rounding from add/subtract cannot drift over days of samples.
_RESUM_EVERY: Final = 4096


class Window:
    """The samples of one (bed, metric) inside one time span, with running aggregates.

    Every sample is added once and removed once, and the min/max are kept in
    monotonic deques, so a new sample costs O(1) amortised whatever the span:
    a 60 s window at 3 values/s is no longer copied on every observation.
    """

    __slots__ = ("_head", "_maxs", "_mins", "_next", "_removed", "samples", "span_s", "total")

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.samples: deque[tuple[float, float]] = deque()
        self.total = 0.0
        self._mins: deque[tuple[int, float]] = deque()  # values increasing from the left
        self._maxs: deque[tuple[int, float]] = deque()  # values decreasing from the left
        self._next = 0  # index of the next sample added
        self._head = 0  # index of samples[0]
        self._removed = 0

    def add(self, now: float, value: float) -> None:
        index = self._next
        self._next += 1
        self.samples.append((now, value))
        self.total += value
        while self._mins and self._mins[-1][1] >= value:
            self._mins.pop()
        self._mins.append((index, value))
        while self._maxs and self._maxs[-1][1] <= value:
            self._maxs.pop()
        self._maxs.append((index, value))
        samples = self.samples
        while samples and (now - samples[0][0] > self.span_s or len(samples) > MAX_WINDOW_SAMPLES):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, value = self.samples.popleft()
        index = self._head
        self._head += 1
        self.total -= value
        if self._mins and self._mins[0][0] == index:
            self._mins.popleft()
        if self._maxs and self._maxs[0][0] == index:
            self._maxs.popleft()
        self._removed += 1
        if self._removed >= _RESUM_EVERY:
            self._removed = 0
            self.total = math.fsum(v for _, v in self.samples)

    def minimum(self) -> float:
        return self._mins[0][1]

    def maximum(self) -> float:
        return self._maxs[0][1]

    def mean(self) -> float:
        return self.total / len(self.samples)


_EMPTY: Final = Window(0.0)


class Windows:
    def __init__(self) -> None:
        self._views: dict[tuple[str, str, float], Window] = {}

    def add(self, bed: str, metric: str, now: float, value: float, spans_s: Iterable[float]) -> None:
        """One sample into the window of every span the metric's rules use."""
        for span in spans_s:
            view = self._views.get((bed, metric, span))
            if view is None:
                view = self._views[(bed, metric, span)] = Window(span)
            view.add(now, value)

    def view(self, bed: str, metric: str, span_s: float) -> Window:
        return self._views.get((bed, metric, span_s), _EMPTY)


def _beyond(value: float, above: float | None, below: float | None, clear: float | None, active: bool) -> bool:
    # Once active, the condition holds until the value passes the clear limit.
    if above is not None:
        return value > (clear if active and clear is not None else above)
    assert below is not None
    return value < (clear if active and clear is not None else below)


def limit_condition(rule: Rule, bed: str, value: float, active: bool) -> bool:
    above, below, clear = rule.threshold(bed)
    return _beyond(value, above, below, clear, active)


def window_condition(rule: Rule, window: Window, now: float, active: bool) -> bool | None:
    """None while the window holds too little history to judge.

    `window` holds the samples within `rule.window_s` of `now` (Windows.add
    prunes on every sample, and the engine judges right after adding)."""
    samples = window.samples
    if len(samples) < 2 or samples[-1][0] - samples[0][0] < rule.window_s / 2:
        return None
    if rule.kind == "rate":
        (t0, v0), (t1, v1) = samples[0], samples[-1]
        per_min = (v1 - v0) / ((t1 - t0) / 60)
        rising = rule.rise_per_min is not None and per_min >= rule.rise_per_min
        falling = rule.fall_per_min is not None and -per_min >= rule.fall_per_min
        return rising or falling
    if rule.function == "min":
        agg = window.minimum()
    elif rule.function == "max":
        agg = window.maximum()
    else:
        agg = window.mean()
    return _beyond(agg, rule.above, rule.below, rule.clear, active)
