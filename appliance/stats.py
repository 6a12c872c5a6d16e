"""Counters for operators and the fleet: what the performance figures of issue #15 need.

One snapshot (`snapshot()`, a JSON-ready dict) answers `bedside stats` over the
control socket and is published every `health_period_s` as the retained
`status/health` message through the uplink. Everything in it is already in memory:
codec frame counters per device, drop counters per stage, the loop-lag monitor,
the store's own running totals (payload and used bytes, budget drops; never a
query: the store thread may be busy with a drain, and a scan of a full store takes
seconds), the uplink's acknowledged rows, and the alarm-latency histogram.

Pure parts: `LatencyHistogram` and `RateWindow` take their times as arguments.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from appliance.gateway import Gateway

__all__ = ["LatencyHistogram", "RateWindow", "StatsSettings", "snapshot"]

# Upper bounds of the latency buckets, in ms: fine below the 2 ms goal of the alarm
# path (issue #15), coarse above it where only "how bad" matters; the last is open.
LATENCY_BOUNDS_MS: Final = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0)


@dataclass(frozen=True, slots=True)
class StatsSettings:
    # As often as the systemd status line: a fleet dashboard needs no more, and a
    # retained message per 10 s is nothing next to the telemetry.
    health_period_s: float = 10.0
    # Drain rate over the last minute (samples taken every health period).
    rate_window_s: float = 60.0


class LatencyHistogram:
    """Counts per bucket (bounded memory whatever the rate), plus count, sum and max."""

    def __init__(self, bounds_ms: tuple[float, ...] = LATENCY_BOUNDS_MS) -> None:
        self.bounds_ms = bounds_ms
        self.counts = [0] * (len(bounds_ms) + 1)  # the last: above the highest bound
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds_ms, seconds * 1000)] += 1
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)

    def quantile_ms(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile `q` (max for the open bucket)."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                return self.bounds_ms[i] if i < len(self.bounds_ms) else self.max_s * 1000
        return self.max_s * 1000

    def to_json(self) -> dict[str, Any]:
        labels = [f"le_{b:g}ms" for b in self.bounds_ms] + [f"gt_{self.bounds_ms[-1]:g}ms"]
        return {
            "count": self.count,
            "mean_ms": round(self.total_s / self.count * 1000, 3) if self.count else None,
            "max_ms": round(self.max_s * 1000, 3),
            "p50_ms_at_most": self.quantile_ms(0.5),
            "p99_ms_at_most": self.quantile_ms(0.99),
            "buckets": dict(zip(labels, self.counts, strict=True)),
        }


class RateWindow:
    """Rate of a growing counter over the last `window_s` (samples pushed by the caller)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now_s: float, value: int) -> None:
        self._samples.append((now_s, value))
        # Keep one sample at or before the window's start so the rate spans all of it.
        while len(self._samples) > 2 and now_s - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else None


def _links(gw: Gateway) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dev_id, link in gw.links.items():
        entry: dict[str, Any] = {"connected": link.connected}
        codec = getattr(link, "codec", None)  # a serial link's codec lives as long as the link
        stats = getattr(link, "stats", None) or getattr(codec, "stats", None)
        if stats is not None:
            entry.update(frames_ok=stats.frames_ok, frames_bad=stats.frames_bad, bytes_in=stats.bytes_in)
        else:  # a listener: one codec per connection, counted by the listener
            entry.update(frames_ok=getattr(link, "messages", 0), refused=getattr(link, "refused", 0))
        out[dev_id] = entry
    return out


def _store(gw: Gateway) -> dict[str, Any] | None:
    queue = gw.queue
    if queue is None:
        return None
    store = queue.store
    # Running totals the store keeps in memory (read from the loop: plain ints, each
    # read atomic; a value one commit old is fine for a gauge).
    return {
        "payload_bytes": store.payload_bytes,
        "used_bytes": store.used_bytes,
        "max_bytes": store.max_bytes,
        "fill": round(store.fill, 4),
        "held_in_memory": len(queue.hold),
        "last_commit_ok": queue.last_commit_ok,
    }


def _drops(gw: Gateway) -> dict[str, int]:
    from appliance.sinks import JsonlSink

    drops: dict[str, int] = {"alarm_reentrant": gw.alarms.reentrant_dropped}
    for i, sink in enumerate(gw.sinks):
        if isinstance(sink, JsonlSink):
            drops[f"sink{i}_jsonl"] = sink.dropped
    if gw.queue is not None:
        drops["queue_memory"] = gw.queue.dropped_in_memory
        drops["store_budget"] = gw.queue.store.dropped
    # Readings without an agreed MDC term or in an unconvertible unit: not turned into
    # observations by design, counted so a silent mapping gap shows.
    drops["unmapped_readings"] = sum(gw.normalizer.unmapped.values())
    return drops


def snapshot(gw: Gateway, drain: RateWindow) -> dict[str, Any]:
    """Everything above as one JSON-ready dict; reads memory only, never the store."""
    lag = gw.loop_lag
    uplink = gw.uplink
    return {
        "counts": dict(gw.counts),
        "links": _links(gw),
        "drops": _drops(gw),
        "loop_lag": {"worst_ms": round(lag.worst_s * 1000, 3), "late_wakes": lag.late_wakes, "active": lag.active},
        "store": _store(gw),
        "uplink": None
        if uplink is None
        else {"connected": uplink.connected, "sent_rows": uplink.sent_rows, "rows_per_s": drain.rate()},
        "alarm_latency": gw.alarm_latency.to_json(),
        "audit_fhir": None if gw.audit_fhir is None else gw.audit_fhir.stats(),
    }
