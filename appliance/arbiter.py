"""Conflict resolution before the rules: one value per (bed, metric).

When several devices at one bed report the same metric (a monitor's SpO2 and a
spot-check oximeter's), the rules must see one. The precedence list for the
metric from config decides (first listed device with a fresh valid reading
wins); without a list, the current source keeps the metric while its readings
are fresh and valid, and only then does the most recent valid reading take
over. Switching on every observation would interleave two devices' values in
the rules (a rate rule would measure the difference between two sensors, a
delayed limit alarm would restart its delay at every switch). An invalid
reading never displaces a fresh valid one from another device.

Every change of decision (source or reason) is kept as an audit record with the
competing values, in a bounded ring (oldest dropped) that the gateway also hands
to its sinks; an unchanged decision costs no record. Pure: time is passed in; no
I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from appliance.core.model import Observation
from appliance.core.vocab import Quality

__all__ = ["Arbiter", "AuditRecord"]

MAX_AUDIT_RECORDS: Final = 2_000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    time: float
    bed_id: str
    metric: str
    chosen_device: str | None  # None: nothing passed to the rules
    reason: str  # "only source", "precedence", "most recent valid", "held: …"
    candidates: tuple[tuple[str, float | None, str], ...]  # (device, value, quality)

    def to_json_dict(self) -> dict[str, object]:
        return {
            "type": "audit",
            "time": self.time,
            "bed_id": self.bed_id,
            "metric": self.metric,
            "chosen_device": self.chosen_device,
            "reason": self.reason,
            "candidates": [list(c) for c in self.candidates],
        }


@dataclass(slots=True)
class Arbiter:
    precedence: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # A reading older than this no longer competes.
    fresh_s: float = 10.0
    # Also handed every record as it is made (the gateway's sinks keep them).
    on_audit: Callable[[AuditRecord], None] | None = None
    audit: deque[AuditRecord] = field(default_factory=lambda: deque(maxlen=MAX_AUDIT_RECORDS))
    _latest: dict[tuple[str, str], dict[str, tuple[float, Observation]]] = field(default_factory=dict)
    # (bed, metric) -> the source the rules see now, and the last audited decision.
    _current: dict[tuple[str, str], str] = field(default_factory=dict)
    _decided: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def select(self, obs: Observation, now: float) -> bool:
        """True if this observation is the one the rules should see."""
        key = (obs.bed_id, obs.metric)
        sources = self._latest.get(key)
        if sources is None:
            sources = self._latest[key] = {}
        sources[obs.device_id] = (now, obs)
        if len(sources) == 1:  # the common case without building `fresh`: only this device, just seen
            self._current[key] = obs.device_id
            return True
        fresh = {d: o for d, (t, o) in sources.items() if now - t <= self.fresh_s}
        if len(fresh) == 1:
            self._current[key] = obs.device_id
            return True  # the common case: one device per metric, no audit noise
        valid = [d for d, o in fresh.items() if o.quality != Quality.INVALID and o.value is not None]
        order = self.precedence.get(obs.metric, ())
        ranked = [d for d in order if d in valid]
        current = self._current.get(key)
        if ranked:
            chosen, reason = ranked[0], "precedence"
        elif current in valid:
            assert current is not None
            chosen, reason = current, "current source fresh and valid"
        elif valid:
            chosen = max(valid, key=lambda d: sources[d][0])
            reason = "most recent valid"
        else:
            chosen, reason = obs.device_id, "no valid reading: newest passed"
        self._current[key] = chosen
        selected = chosen == obs.device_id
        if self._decided.get(key) == (chosen, reason):
            return selected
        self._decided[key] = (chosen, reason)
        record = AuditRecord(
            now,
            obs.bed_id,
            obs.metric,
            chosen,
            reason,
            tuple(sorted((d, o.value, o.quality) for d, o in fresh.items())),
        )
        self.audit.append(record)
        if self.on_audit is not None:
            self.on_audit(record)
        return selected
