"""The update policy an operator sets in `[ota]`: how often to poll the fleet server,
how long a reboot may wait for alarms to end, how a new slot is judged. Each default
and limit is written here once; the config section and the agent both use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appliance.core.settings import setting

__all__ = ["DEFAULT_POLICY", "UpdatePolicy"]


@dataclass(frozen=True, slots=True)
class UpdatePolicy:
    poll_interval_s: float = setting(3600.0, min=10.0, max=7 * 86400.0)
    poll_jitter_s: float = setting(600.0, min=0.0, max=86400.0)
    # A reboot waits while an alarm is active; past this the fleet is told, nothing is forced.
    max_deferral_s: float = setting(4 * 3600.0, min=0.0, max=7 * 86400.0)
    health_timeout_s: float = setting(120.0, min=1.0, max=3600.0)
    max_boot_attempts: int = setting(3, min=1, max=10)


DEFAULT_POLICY: Final = UpdatePolicy()
