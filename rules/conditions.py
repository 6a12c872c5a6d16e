"""Condition tests for physiological rules: limits with hysteresis, windows.

Pure functions over values and sample windows; the engine owns the state.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from rules.spec import Rule

__all__ = ["MAX_WINDOW_SAMPLES", "Windows", "limit_condition", "window_condition"]

# Per (bed, metric); at 3 values/s an hour is 10 800 samples. Overflow policy:
# the oldest sample is dropped (the deque's maxlen).
MAX_WINDOW_SAMPLES: Final = 12_000


class Windows:
    def __init__(self) -> None:
        self._samples: dict[tuple[str, str], deque[tuple[float, float]]] = {}

    def add(self, bed: str, metric: str, now: float, value: float, keep_s: float) -> None:
        window = self._samples.get((bed, metric))
        if window is None:
            window = self._samples[(bed, metric)] = deque(maxlen=MAX_WINDOW_SAMPLES)
        window.append((now, value))
        while window and now - window[0][0] > keep_s:
            window.popleft()

    def samples(self, bed: str, metric: str) -> deque[tuple[float, float]]:
        return self._samples.get((bed, metric), deque())


def _beyond(value: float, above: float | None, below: float | None, clear: float | None, active: bool) -> bool:
    # Once active, the condition holds until the value passes the clear limit.
    if above is not None:
        return value > (clear if active and clear is not None else above)
    assert below is not None
    return value < (clear if active and clear is not None else below)


def limit_condition(rule: Rule, bed: str, value: float, active: bool) -> bool:
    above, below, clear = rule.threshold(bed)
    return _beyond(value, above, below, clear, active)


def window_condition(rule: Rule, samples: deque[tuple[float, float]], now: float, active: bool) -> bool | None:
    """None while the window holds too little history to judge."""
    recent = [(t, v) for t, v in samples if now - t <= rule.window_s]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < rule.window_s / 2:
        return None
    if rule.kind == "rate":
        (t0, v0), (t1, v1) = recent[0], recent[-1]
        per_min = (v1 - v0) / ((t1 - t0) / 60)
        rising = rule.rise_per_min is not None and per_min >= rule.rise_per_min
        falling = rule.fall_per_min is not None and -per_min >= rule.fall_per_min
        return rising or falling
    values = [v for _, v in recent]
    if rule.function == "min":
        agg = min(values)
    elif rule.function == "max":
        agg = max(values)
    else:
        agg = sum(values) / len(values)
    return _beyond(agg, rule.above, rule.below, rule.clear, active)
