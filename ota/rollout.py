"""Staged rollout: which boxes a release is offered to. Pure; no I/O, time is an argument.

A release's target metadata carries `custom.rollout`:

    {"percent": 10, "cohorts": ["gw-icu-3"], "not_before": "2026-12-03T06:00:00Z", "halted": false}

A box takes the release when it is not halted, `not_before` has passed, and the box is
named in `cohorts` or its bucket is below `percent`. The bucket is a stable hash of the
gateway id (the MQTT client id, the certificate's CN) mapped onto [0, 100): the same
box always has the same bucket, so widening 10 % -> 50 % keeps the first 10 % in and
the fleet tool can compute who is eligible from the ids alone. Percent is a whole
number: TUF signs canonical JSON, which has no floats. Buckets do not depend
on the release: the first percent of the fleet is the same canary set every time
(deliberate: a known canary set that operators watch; name pilots in `cohorts`).

A halted release is never started by a box that had not started it; a box that had
(downloading, installing, awaiting reboot) carries on, because stopping it half-way
helps nobody: RAUC only switches slots at the end, and the health gate still decides.
A target without `rollout` (published before rollouts existed) is offered to all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["FULL", "RolloutPolicy", "bucket", "eligible"]

_SCALE: Final = 2**64


def bucket(gateway_id: str) -> float:
    """The box's place in the fleet, in [0, 100): SHA-256 of its id, first 8 bytes."""
    digest = hashlib.sha256(gateway_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100.0 / _SCALE


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    percent: int = 100
    cohorts: tuple[str, ...] = field(default_factory=tuple)
    not_before: datetime | None = None
    halted: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.percent, bool) or not isinstance(self.percent, int) or not 0 <= self.percent <= 100:
            raise ValueError(f"rollout percent {self.percent!r} is not a whole number between 0 and 100")
        if self.not_before is not None and self.not_before.tzinfo is None:
            raise ValueError("rollout not_before must carry a time zone")

    def to_json(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "cohorts": list(self.cohorts),
            "not_before": self.not_before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if self.not_before else "",
            "halted": self.halted,
        }

    @classmethod
    def from_json(cls, data: object) -> RolloutPolicy:
        """From signed target metadata; anything malformed offers the release to nobody
        (a release the box cannot judge is not installed)."""
        if data is None:
            return FULL
        try:
            if not isinstance(data, dict):
                raise TypeError("rollout is not an object")
            text = str(data.get("not_before") or "")
            cohorts = data.get("cohorts") or []
            if not isinstance(cohorts, list):
                raise TypeError("cohorts is not a list")
            return cls(
                percent=data.get("percent", 100),
                cohorts=tuple(str(c) for c in cohorts),
                not_before=datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None,
                halted=bool(data.get("halted", False)),
            )
        except (TypeError, ValueError):
            return cls(percent=0, halted=True)


FULL: Final = RolloutPolicy()


def eligible(policy: RolloutPolicy, gateway_id: str, now: datetime) -> tuple[bool, str]:
    """May this box start the release now? And if not, why (for the log)."""
    if policy.halted:
        return False, "rollout halted"
    if policy.not_before is not None and now < policy.not_before:
        return False, f"rollout starts {policy.to_json()['not_before']}"
    if gateway_id in policy.cohorts:
        return True, "named in the rollout's cohorts"
    place = bucket(gateway_id)
    if place < policy.percent:
        return True, f"bucket {place:.2f} < {policy.percent} %"
    return False, f"bucket {place:.2f} outside the first {policy.percent} %"
