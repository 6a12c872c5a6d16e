"""The terminal view of a snapshot (appliance/view.py), drawn with rich.

Alarms first (IEC 60601-1-8 colours: high red, medium yellow, low cyan, with the
priority also spelled out for a monochrome terminal), then each bed's devices
with their values in display units (stale ones dim, with their age), then the
technical events grouped per device and kind, the gateway's own under
"gateway". Used by `bedside demo` (in-process) and `bedside top` (over the
control socket); both pass the same snapshot JSON.
"""

from __future__ import annotations

from typing import Any, Final

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from appliance.view import KEYS

__all__ = ["KEYS", "render", "to_text"]

PRIORITY_STYLE: Final = {"high": "bold white on red", "medium": "black on yellow", "low": "black on cyan"}
_RANK: Final = {"high": 0, "medium": 1, "low": 2}
LINK_STYLE: Final = {"ok": "green", "waiting": "dim", "stale": "yellow", "disconnected": "bold red"}


def _t(value: object) -> Text:
    """A data cell: never parsed as rich markup, control characters (ESC, CR, ...) shown
    as `?`, so a device's text cannot restyle, move or retitle the operator's terminal."""
    return Text("".join(c if c.isprintable() else "?" for c in str(value)))


def _clock(stamp: str | None) -> str:
    """HH:MM:SS of an RFC 3339 UTC time, as people read it on a ward."""
    return stamp[11:19] if stamp and len(stamp) >= 19 else "--:--:--"


def _countdown(seconds: float) -> str:
    whole = int(seconds + 0.999)
    return f"{whole // 60}:{whole % 60:02d}"


def _header(snap: dict[str, Any]) -> Text:
    status = snap.get("status") or {}
    text = Text(f"Bedside Gateway {snap.get('gateway_id') or ''}  ", style="bold")
    text.append(f"{_clock(snap.get('time'))} UTC   {snap.get('observations', 0)} observations")
    for key in ("store", "uplink"):
        if status.get(key):
            text.append(f"   {key}: {status[key]}")
    paused = [a["paused_s"] for a in snap.get("alarms", []) if a.get("paused_s")]
    if paused:
        text.append(f"\nAUDIO PAUSED — {_countdown(max(paused))} left", style="bold magenta")
    return text


def _alarms(snap: dict[str, Any]) -> RenderableType:
    alarms = sorted(snap.get("alarms", []), key=lambda a: (_RANK.get(a["priority"], 3), a.get("onset") or ""))
    if not alarms:
        return Text("Alarms: none", style="green")
    table = Table(title="Alarms", title_justify="left", expand=True, pad_edge=False)
    for name in ("priority", "bed", "device", "onset", "state", "alarm"):
        table.add_column(name, no_wrap=name != "alarm", overflow="fold")
    for a in alarms:
        state = a["state"].replace("_", " ")
        if a.get("paused_s"):
            state += f" {_countdown(a['paused_s'])}"
        table.add_row(
            Text(f" {a['priority'].upper()} ", style=PRIORITY_STYLE.get(a["priority"], "")),
            _t(a["bed_id"]),
            _t(a.get("device_id") or ""),
            _t(_clock(a.get("onset"))),
            _t(state),
            _t(a["message"]),
        )
    return table


def _beds(snap: dict[str, Any]) -> RenderableType:
    table = Table(title="Beds", title_justify="left", expand=True, pad_edge=False)
    for name in ("bed", "device", "link", "values"):
        table.add_column(name, no_wrap=name != "values", overflow="fold")
    for bed in snap.get("beds", []):
        for dev in bed["devices"]:
            cells = Text()
            for v in dev["values"]:
                style = "dim" if v["stale"] else ("yellow" if v["quality"] != "valid" else "")
                mark = {"questionable": "?", "invalid": "!"}.get(v["quality"], "")
                cells.append(f"{v['label']} ", style="dim")
                cells.append(f"{v['value']}{mark}", style=style or "bold")
                unit = f" {v['unit']}" if v["unit"] else ""
                age = f" ({v['age_s']:.0f} s ago)" if v["stale"] else ""
                cells.append(f"{unit}{age}   ", style="dim")
            protocol = f" ({dev['protocol']})" if dev.get("protocol") else ""
            link = str(dev["link"])
            table.add_row(
                _t(bed["bed_id"]), _t(dev["device_id"] + protocol), Text(link, style=LINK_STYLE.get(link, "")), cells
            )
    return table


def _events(snap: dict[str, Any]) -> RenderableType:
    events = snap.get("events", [])
    if not events:
        return Text("Technical events: none", style="green")
    table = Table(title="Technical events (per device and kind)", title_justify="left", expand=True, pad_edge=False)
    for name in ("where", "device", "event", "count", "last", "detail"):
        table.add_column(name, no_wrap=name != "detail", overflow="fold")
    for ev in events:
        style = "" if ev["active"] else "dim"
        kind = ev["kind"].replace("_", " ") + ("" if ev["active"] else " (ended)")
        cells = (ev["scope"], ev["device_id"], kind, str(ev["count"]), _clock(ev["last"]), ev["detail"])
        table.add_row(*map(_t, cells), style=style)
    return table


def render(snap: dict[str, Any], *, keys: str = "", notice: str = "") -> Group:
    parts: list[RenderableType] = [_header(snap), _alarms(snap), _beds(snap), _events(snap)]
    if keys:
        parts.append(Text(keys, style="dim"))
    if notice:
        parts.append(Text(notice, style="bold"))
    return Group(*parts)


def to_text(snap: dict[str, Any], *, color: bool = False, width: int = 120, keys: str = "", notice: str = "") -> str:
    """The view as a string (ANSI colours only when `color`)."""
    console = Console(width=width, color_system="standard" if color else None, force_terminal=color, record=False)
    with console.capture() as cap:
        console.print(render(snap, keys=keys, notice=notice))
    return cap.get()
