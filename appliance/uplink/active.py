"""Per bed, the alarms not yet cleared: the retained `status/alarms/<bed>` payload.

A consumer that connects late (or restarts) learns each bed's current alarm state
from one retained message instead of replaying the alarm stream. The alarm events
themselves still travel through the store (`alarms` topic, never lost); this view
is memory only and rebuilt by the alarm events of this process, so after a restart
it starts empty, which is true: the engine's alarm state starts empty too.
Pure: no I/O.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from appliance.core.model import AlarmEvent
from appliance.core.vocab import AlarmEventState
from appliance.queue.records import epoch_ms

__all__ = ["ActiveAlarms", "bed_leaf"]


def bed_leaf(bed_id: str) -> str:
    """The status name for a bed; '/', '+' and '#' would change the topic's meaning."""
    return "alarms/" + quote(bed_id, safe="")


class ActiveAlarms:
    def __init__(self) -> None:
        self._beds: dict[str, dict[str, AlarmEvent]] = {}

    def update(self, event: AlarmEvent) -> dict[str, Any]:
        """Apply one alarm event; returns the bed's new payload (JSON-ready)."""
        bed = self._beds.setdefault(event.bed_id, {})
        if event.state == AlarmEventState.CLEARED:  # a StrEnum: also a plain "cleared" from a store
            bed.pop(event.alarm_id, None)
        else:
            bed[event.alarm_id] = event
        return {
            "bed_id": event.bed_id,
            "time": epoch_ms(event.time),
            "alarms": [_alarm(a) for a in bed.values()],
        }


def _alarm(a: AlarmEvent) -> dict[str, Any]:
    return {
        "alarm_id": a.alarm_id,
        "rule_id": a.rule_id,
        "priority": str(a.priority),
        "kind": a.kind,
        "state": str(a.state),
        "time": epoch_ms(a.time),
        "message": a.message,
        "device_id": a.device_id,
        "patient_id": a.patient_id,
    }
