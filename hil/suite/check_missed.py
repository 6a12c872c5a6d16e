"""`no_missed_alarm`: every alarm episode the bench drove inside a window (an OTA: the
download, the install, the reboot into the new slot, the commit) raised its alarm.

An episode starts at a step whose name begins with `each` (a vitals step driving the
condition) and ends at the next vitals step of the same device (or the scenario's
end). The box is off between an OTA's `NAME/down` and `NAME/up` (the reboot: from the
agent's "rebooting" to the gateway's unit started again) and between a power cut and
its `NAME/end`. For every episode that starts inside the window:

- the box up at its start: the alarm (rule, priority, bed, state active, at `where`)
  within `within_ms` of the trigger;
- the box off at its start but back before the episode ended: the alarm within
  `within_ms` of the box being up again (the condition still holds; a restarted
  gateway must raise it afresh);
- the box off for the whole episode, or back with less of it left than the rule's
  condition delay (`not_before_ms`): counted and named, not failed — no gateway ran
  long enough to raise it (the alarm co-processor sounds when the gateway is gone).

Fails when an episode's alarm is missing or late, or when fewer than `min_count`
episodes could be judged (a window the box spent off proves nothing). Pure: events in,
an Outcome out.
"""

from __future__ import annotations

from collections.abc import Sequence

from hil.suite.check import Event, Outcome, alarm_outcome
from hil.suite.spec import Expect, Scenario

__all__ = ["missed_alarms", "off_windows"]


def off_windows(events: Sequence[Event]) -> list[tuple[float, float]]:
    """(off, on) wall times when the box was off: OTA reboots and power cuts."""
    marks = {e.data["name"]: float(e.data["trigger_t"]) for e in events if e.kind == "step" and e.data.get("name")}
    actions = {e.data["name"]: e.data.get("action") for e in events if e.kind == "step" and e.data.get("name")}
    out = []
    for name, t in marks.items():
        if name.endswith("/down") and (up := marks.get(f"{name.removesuffix('/down')}/up")) is not None:
            out.append((t, up))
        elif actions.get(name) == "power_cut" and "/" not in name and (on := marks.get(f"{name}/end")) is not None:
            out.append((t, on))
    return sorted(out)


def _episodes(
    exp: Expect, scenario: Scenario, marks: dict[str, float], end_t: float
) -> list[tuple[str, float, float, float]]:
    """(step name, start, end, next episode's start) of every episode inside the window."""
    lo, hi = marks[exp.after], marks[exp.until]
    vitals = sorted(
        ((s.name, s.device, marks[s.name]) for s in scenario.steps if s.action == "vitals" and s.name in marks),
        key=lambda v: v[2],
    )
    starts = [t for name, _, t in vitals if name.startswith(exp.each)]
    out = []
    for i, (name, device, start) in enumerate(vitals):
        if not name.startswith(exp.each) or not lo <= start <= hi:
            continue
        later = [t for _, dev, t in vitals[i + 1 :] if dev == device]
        following = [t for t in starts if t > start]
        out.append((name, start, later[0] if later else end_t, following[0] if following else float("inf")))
    return out


def missed_alarms(exp: Expect, scenario: Scenario, events: Sequence[Event]) -> Outcome:
    marks = {e.data["name"]: float(e.data["trigger_t"]) for e in events if e.kind == "step" and e.data.get("name")}
    for step in (exp.after, exp.until):
        if step not in marks:
            return Outcome(exp, False, f"step {step!r} was never played (the window never closed)")
    end_t = max((e.t for e in events), default=marks[exp.until])
    off = off_windows(events)
    judged, unseen, missed, worst = 0, [], [], 0.0
    for name, start, stop, following in _episodes(exp, scenario, marks, end_t):
        window = next(((a, b) for a, b in off if a <= start < b), None)
        t0 = start if window is None else window[1]
        if stop - t0 <= exp.not_before_ms / 1000:  # off throughout, or back too late for the condition delay
            unseen.append(name)
            continue
        # Only this episode's alarm counts: none raised once the next episode began.
        outcome = alarm_outcome(exp, [e for e in events if e.t < following], t0)
        judged += 1
        if not outcome.ok:
            missed.append(f"{name}: {outcome.detail}" + (" (counted from the box back up)" if window else ""))
        elif outcome.latency_ms is not None:
            worst = max(worst, outcome.latency_ms)
    off_note = f"; {len(unseen)} while the box was off ({', '.join(unseen)})" if unseen else ""
    if missed:
        return Outcome(exp, False, f"{len(missed)} of {judged} episodes missed: {'; '.join(missed)}{off_note}")
    if judged < exp.min_count:
        return Outcome(exp, False, f"only {judged} episodes with the box up, at least {exp.min_count:.0f}{off_note}")
    return Outcome(exp, True, f"all {judged} episodes raised it, the slowest {worst:.0f} ms{off_note}", worst)
