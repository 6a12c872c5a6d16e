"""The operator's view of a running gateway: one snapshot that the terminal view
(`bedside demo`, `bedside top`) and the web console both draw.

`BedsideView` is a subscriber (records in, no I/O): the latest value per device and
metric with its time, each device's link state from its own technical events, and
technical events grouped per (device, kind) with a count, so one chattering device
cannot push everything else off the screen. `snapshot()` turns it, the alarm
circuit's list and the path status into plain JSON (the control socket's `view`
command sends exactly this).

Where a device's events go: configured devices under their bed; the gateway's own
conditions (store, uplink, clock, loop lag, updates) under "gateway", never a bed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from appliance import display
from appliance.core.model import AlarmEvent, Observation, Record, TechnicalEvent, format_time
from appliance.core.vocab import TechnicalKind

__all__ = ["GATEWAY_SCOPE", "KEYS", "STALE_AFTER_S", "BedsideView", "DeviceInfo", "path_status"]

GATEWAY_SCOPE: Final = "gateway"
KEYS: Final = "keys: a = acknowledge all alarms   p = audio pause (120 s)   q = quit"
# A value this old is greyed with its age even before the link calls it stale.
STALE_AFTER_S: Final = 15.0
MAX_EVENT_GROUPS: Final = 64  # (device, kind) groups kept; the least recently seen goes first
MAX_METRICS_PER_DEVICE: Final = 32
_LINK_KINDS: Final = {TechnicalKind.DISCONNECTED: "disconnected", TechnicalKind.STALE: "stale"}
# Events that say "all is well": shown only as the link state, not as a group.
_QUIET_KINDS: Final = frozenset({TechnicalKind.CONNECTED})


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    protocol: str
    bed_id: str


@dataclass(slots=True)
class _Device:
    info: DeviceInfo
    values: dict[str, Observation] = field(default_factory=dict)
    problems: set[str] = field(default_factory=set)  # active link conditions (disconnected, stale)


@dataclass(slots=True)
class _Group:
    scope: str
    device_id: str
    kind: str
    count: int = 0
    active: bool = False
    last: datetime | None = None
    detail: str = ""


class BedsideView:
    """Latest values, link states and grouped technical events; see the module doc."""

    def __init__(self, devices: list[DeviceInfo], gateway_id: str = "") -> None:
        self.gateway_id = gateway_id
        self._devices: dict[str, _Device] = {d.device_id: _Device(d) for d in devices}
        self._groups: OrderedDict[tuple[str, str], _Group] = OrderedDict()
        self.observations = 0

    def __call__(self, record: Record) -> None:
        if isinstance(record, Observation):
            self._observation(record)
        elif isinstance(record, TechnicalEvent):
            self._technical(record)
        elif isinstance(record, AlarmEvent):
            pass  # alarms are read from the circuit, which knows their current state

    def _observation(self, obs: Observation) -> None:
        self.observations += 1
        device = self._devices.get(obs.device_id)
        if device is None:  # a device that is not configured (a replay): shown under its bed
            device = self._devices[obs.device_id] = _Device(DeviceInfo(obs.device_id, "", obs.bed_id))
        elif device.info.bed_id != obs.bed_id:  # re-paired to another bed while running
            device.info = DeviceInfo(device.info.device_id, device.info.protocol, obs.bed_id)
        if obs.metric in device.values or len(device.values) < MAX_METRICS_PER_DEVICE:
            device.values[obs.metric] = obs
        device.problems.discard("stale")  # a value arrived: whatever the link said, it reads again

    def _technical(self, ev: TechnicalEvent) -> None:
        device = self._devices.get(ev.device_id)
        if device is not None:
            if ev.kind == TechnicalKind.CONNECTED:
                device.problems.discard("disconnected")
            elif ev.kind in _LINK_KINDS:
                state = _LINK_KINDS[TechnicalKind(ev.kind)]
                (device.problems.add if ev.active else device.problems.discard)(state)
        if ev.kind in _QUIET_KINDS:
            ended = self._groups.get((ev.device_id, str(TechnicalKind.DISCONNECTED)))
            if ended is not None:  # connected again: the disconnection is over
                ended.active = False
            return
        scope = device.info.bed_id if device is not None else GATEWAY_SCOPE
        key = (ev.device_id, str(ev.kind))
        group = self._groups.get(key) or _Group(scope, ev.device_id, str(ev.kind))
        group.count += 1
        group.active = ev.active
        group.last = ev.time
        group.detail = ev.detail
        self._groups[key] = group
        self._groups.move_to_end(key)
        while len(self._groups) > MAX_EVENT_GROUPS:
            self._groups.popitem(last=False)

    # -- the snapshot --------------------------------------------------------------
    def snapshot(
        self, now: datetime, alarms: list[dict[str, Any]], status: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Plain JSON: beds -> devices -> values; alarms; event groups; path status."""
        beds: dict[str, list[dict[str, Any]]] = {}
        for device in self._devices.values():
            beds.setdefault(device.info.bed_id, []).append(self._device(device, now))
        groups = sorted(self._groups.values(), key=lambda g: (g.scope != GATEWAY_SCOPE, g.scope, g.device_id, g.kind))
        snap: dict[str, Any] = printable(
            {
                "time": format_time(now),
                "gateway_id": self.gateway_id,
                "observations": self.observations,
                "status": status or {},
                "beds": [{"bed_id": bed, "devices": devs} for bed, devs in sorted(beds.items())],
                "alarms": alarms,
                "events": [
                    {
                        "scope": g.scope,
                        "device_id": g.device_id,
                        "kind": g.kind,
                        "count": g.count,
                        "active": g.active,
                        "last": format_time(g.last) if g.last else None,
                        "detail": g.detail,
                    }
                    for g in groups
                ],
            }
        )
        return snap

    @staticmethod
    def _device(device: _Device, now: datetime) -> dict[str, Any]:
        values = []
        for metric in sorted(device.values, key=display.order):
            obs = device.values[metric]
            text, unit = display.show(metric, obs.value, obs.unit)
            age_s = max(0.0, (now - obs.received).total_seconds())
            values.append(
                {
                    "metric": metric,
                    "label": display.label(metric),
                    "value": text,
                    "unit": unit,
                    "quality": str(obs.quality),
                    "age_s": round(age_s, 1),
                    "stale": bool(device.problems) or age_s > STALE_AFTER_S,
                }
            )
        link = "disconnected" if "disconnected" in device.problems else ("stale" if device.problems else "ok")
        if not device.values and link == "ok":
            link = "waiting"
        return {
            "device_id": device.info.device_id,
            "protocol": device.info.protocol,
            "link": link,
            "values": values,
        }


def path_status(stats: dict[str, Any]) -> dict[str, str]:
    """The rest of the path after the alarm, in words, from `Gateway.stats()`."""
    out: dict[str, str] = {}
    store = stats.get("store")
    if store:
        held = f", {store['held_in_memory']} held in memory" if store.get("held_in_memory") else ""
        out["store"] = f"{store['used_bytes'] / 1e6:.1f} MB ({store['fill']:.1%} of budget){held}"
    uplink = stats.get("uplink")
    if uplink is None:
        out["uplink"] = "not configured"
    else:
        state = "connected" if uplink["connected"] else "DOWN"
        out["uplink"] = f"{state}, {uplink['sent_rows']} batches delivered"
    return out


def printable(value: Any) -> Any:
    """Every string in a snapshot with control characters (ESC, CR, BEL, ...) as `?`:
    device ids, alarm texts and event details come from devices and senders, and end
    up on an operator's terminal."""
    if isinstance(value, str):
        return value if value.isprintable() else "".join(c if c.isprintable() else "?" for c in value)
    if isinstance(value, dict):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value
