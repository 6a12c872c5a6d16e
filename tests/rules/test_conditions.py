"""Window rules: the O(1) running window judges exactly as a full scan of the samples."""

from __future__ import annotations

import math
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.conditions import MAX_WINDOW_SAMPLES, Window, Windows, window_condition
from rules.spec import Rule, parse_rules


def _rule(text: str) -> Rule:
    return parse_rules(text).rules[0]


RATE = _rule(
    '[[rule]]\nid = "r"\nkind = "rate"\nmetric = "M"\nwindow_s = 60.0\nfall_per_min = 6.0\nrise_per_min = 9.0\n'
)
AGGREGATES = [
    _rule(f'[[rule]]\nid = "{f}"\nkind = "aggregate"\nmetric = "M"\nwindow_s = 30.0\nfunction = "{f}"\n{lim}\n')
    for f, lim in (("mean", "below = 93.0\nclear = 94.0"), ("min", "below = 90.0"), ("max", "above = 100.5"))
]


def reference(rule: Rule, samples: list[tuple[float, float]], now: float, active: bool) -> bool | None:
    """The full scan the engine used to do for every observation."""
    recent = [(t, v) for t, v in samples if now - t <= rule.window_s]
    if len(recent) < 2 or recent[-1][0] - recent[0][0] < rule.window_s / 2:
        return None
    if rule.kind == "rate":
        (t0, v0), (t1, v1) = recent[0], recent[-1]
        per_min = (v1 - v0) / ((t1 - t0) / 60)
        return (rule.rise_per_min is not None and per_min >= rule.rise_per_min) or (
            rule.fall_per_min is not None and -per_min >= rule.fall_per_min
        )
    values = [v for _, v in recent]
    agg = {"min": min, "max": max}.get(rule.function, lambda xs: sum(xs) / len(xs))(values)
    limit = rule.clear if active and rule.clear is not None else (rule.above if rule.above is not None else rule.below)
    assert limit is not None
    return agg > limit if rule.above is not None else agg < limit


steps = st.lists(
    st.tuples(st.floats(0.0, 20.0), st.floats(60.0, 105.0, allow_nan=False).map(lambda v: round(v, 1))),
    min_size=1,
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(steps, st.booleans())
def test_running_windows_judge_as_a_full_scan(sequence: list[tuple[float, float]], active: bool) -> None:
    windows = Windows()
    spans = sorted({RATE.window_s, *(r.window_s for r in AGGREGATES)})
    history: list[tuple[float, float]] = []
    now = 1_000.0
    for dt, value in sequence:
        now += dt
        history.append((now, value))
        windows.add("B", "M", now, value, spans)
        for rule in (RATE, *AGGREGATES):
            got = window_condition(rule, windows.view("B", "M", rule.window_s), now, active)
            want = reference(rule, history, now, active)
            if rule.function == "mean" and got is not None:
                recent = [v for t, v in history if now - t <= rule.window_s]
                mean = sum(recent) / len(recent)
                if math.isclose(mean, 93.0, abs_tol=1e-9) or math.isclose(mean, 94.0, abs_tol=1e-9):
                    continue  # on the limit itself: float summation order may decide
            assert got == want, (rule.id, now, value)


def test_a_sample_costs_the_same_however_long_the_window() -> None:
    # Count the work instead of timing it: each sample enters and leaves the
    # window's deques once, so the deque lengths never exceed the samples held.
    window = Window(3_600.0)
    for i in range(20_000):
        window.add(float(i), float(i % 7))
        assert len(window._mins) <= len(window.samples) and len(window._maxs) <= len(window.samples)
    assert len(window.samples) == 3_601
    assert window.minimum() == 0.0 and window.maximum() == 6.0


def test_the_window_keeps_at_most_its_bound_and_drops_the_oldest() -> None:
    window = Window(1e9)
    for i in range(MAX_WINDOW_SAMPLES + 10):
        window.add(i * 0.001, float(i))
    assert len(window.samples) == MAX_WINDOW_SAMPLES
    assert window.samples[0] == (0.01, 10.0)
    assert window.minimum() == 10.0
    assert math.isclose(window.mean(), sum(range(10, MAX_WINDOW_SAMPLES + 10)) / MAX_WINDOW_SAMPLES)


def test_the_running_sum_does_not_drift_over_a_long_run() -> None:
    window = Window(10.0)
    kept: deque[float] = deque()
    for i in range(100_000):
        value = 0.1 * (i % 997)
        window.add(float(i), value)
        kept.append(value)
        while len(kept) > 11:
            kept.popleft()
    assert math.isclose(window.total, math.fsum(kept), rel_tol=1e-12)
