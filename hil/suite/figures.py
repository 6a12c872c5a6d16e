"""Numbers the report shows, computed from a run (pure): latency samples per path,
percentiles, and the gateway's resource use with its growth per hour."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace

from hil.suite.check import Event, alarm_outcome, trigger_times
from hil.suite.spec import Scenario
from hil.suite.target import Sample

__all__ = ["latencies", "percentiles", "resources", "slope_per_hour"]


def percentiles(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p95, p99 and max (nearest-rank); only n when there are no values."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"n": len(ordered), "p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ordered[-1]}


def latencies(scenario: Scenario, events: Sequence[Event]) -> dict[str, list[float]]:
    """Trigger -> local output and trigger -> broker, in ms: every alarm the scenario
    expects without a deliberate delay (no condition delay, no `not_before_ms`) after a
    step that changed what a device sends, on the path the expectation names."""
    triggers = trigger_times(events)
    device_steps = {s.name for s in scenario.steps if s.action in ("vitals", "clock_step")}
    out: dict[str, list[float]] = {"local": [], "broker": []}
    for exp in scenario.expects:
        if exp.kind != "alarm" or exp.state != "active" or exp.not_before_ms or exp.after not in device_steps:
            continue
        if exp.after not in triggers:
            continue
        found = alarm_outcome(replace(exp, within_ms=math.inf), events, triggers[exp.after])
        if found.latency_ms is not None:
            out[exp.where].append(max(0.0, found.latency_ms))  # local times are whole ms
    return out


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares growth per hour of (time s, value) points; 0 with fewer than 2."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in points) / var * 3600


def resources(samples: Sequence[Sample]) -> dict[str, float]:
    """RSS (first, last, max, growth per hour, MiB) and mean CPU (% of one core)."""
    if len(samples) < 2:
        return {}
    mib = 1024 * 1024
    # The first seconds are start-up (imports, the store's first check): growth is
    # measured from the second quarter of the run on.
    steady = samples[len(samples) // 4 :]
    cpu = 0.0
    span = samples[-1].t - samples[0].t
    if span > 0:
        # CPU time restarts with a restarted gateway: sum the non-negative steps.
        cpu = sum(max(0.0, b.cpu_s - a.cpu_s) for a, b in itertools.pairwise(samples)) / span * 100
    return {
        "rss_first_mib": samples[0].rss_bytes / mib,
        "rss_last_mib": samples[-1].rss_bytes / mib,
        "rss_max_mib": max(s.rss_bytes for s in samples) / mib,
        "rss_growth_mib_per_h": slope_per_hour([(s.t, s.rss_bytes / mib) for s in steady]),
        "cpu_percent": cpu,
    }
