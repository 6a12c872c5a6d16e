"""The expectation checker: pure, over the events a run recorded.

An `Event` is what the bench saw at a wall-clock time `t` (seconds since the epoch,
one clock for all: the bench, the gateway and the broker consumer share the machine):
a step it played (`bench`/`step`, with the trigger time of the step), an alarm event
written by the gateway's local output (`local`/`alarm`, timed by the gateway) or
received from the broker (`broker`/`alarm`), an observation at the broker
(`broker`/`obs`) or in the gateway's own sink (`local`/`obs`), a control-socket
snapshot (`control`/`snapshot`), the gateway's CPU time and RSS (`gateway`/`sample`).
Nothing here does I/O, so a broken build's failure is a decision that can be tested
on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hil.suite.spec import Expect, Scenario

__all__ = ["WINDOWED", "Event", "Outcome", "alarm_outcome", "check", "describe", "open_until", "trigger_times"]


@dataclass(frozen=True, slots=True)
class Event:
    t: float
    source: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    expect: Expect
    ok: bool
    detail: str
    latency_ms: float | None = None  # trigger -> the event that satisfied it


def describe(exp: Expect) -> str:
    """One line naming an expectation, as the report and JUnit show it."""
    parts = [exp.kind]
    if exp.rule:
        parts.append(f"rule={exp.rule}")
    if exp.state != "active" and exp.kind == "alarm":
        parts.append(f"state={exp.state}")
    if exp.priority:
        parts.append(f"priority={exp.priority}")
    if exp.bed:
        parts.append(f"bed={exp.bed}")
    if exp.device:
        parts.append(f"device={exp.device}")
    if exp.kind == "rss_bounded":
        parts.append(f"growth <= {exp.max_mib:g} MiB")
    if exp.kind in ("alarm", "recovery", "no_alarm", "no_missed_alarm"):
        parts.append(f"at {exp.where} within {exp.within_ms:.0f} ms")
    if exp.each:
        parts.append(f"each episode {exp.each}*")
    if exp.not_before_ms:
        parts.append(f"not before {exp.not_before_ms:.0f} ms")
    parts += _bounds(exp)
    if exp.after:
        parts.append(f"after step {exp.after!r}")
    if exp.until:
        parts.append(f"until step {exp.until!r}")
    return " ".join(parts)


_COUNTED = {"no_missed_alarm": "episodes judged"}


def _bounds(exp: Expect) -> list[str]:
    """no_loss's resend bounds, backlog's volume."""
    return [
        *([f"resends >= {exp.resends_at_least:.0f}"] if exp.resends_at_least else []),
        *([f"resends <= {exp.resends_at_most:.0f}"] if exp.resends_at_most >= 0 else []),
        *([f"at least {exp.min_count:.0f} {_COUNTED.get(exp.kind, 'observations')}"] if exp.min_count else []),
    ]


# Kinds judged over a window [the step's mark, + within_ms]: the run must outlast it.
WINDOWED: Final = frozenset({"alarm", "no_alarm", "recovery"})


def trigger_times(events: Sequence[Event]) -> dict[str, float]:
    """Step name -> its trigger time (the first frame written with the step's values)."""
    return {e.data["name"]: float(e.data["trigger_t"]) for e in events if e.kind == "step" and e.data.get("name")}


def _matches(exp: Expect, alarm: dict[str, Any]) -> bool:
    rule_id = str(alarm.get("rule_id", ""))
    if rule_id != exp.rule and rule_id.partition(":")[0] != exp.rule:
        return False
    if exp.bed and alarm.get("bed_id") != exp.bed:
        return False
    return not exp.priority or alarm.get("priority") == exp.priority


def alarm_outcome(exp: Expect, events: Sequence[Event], t0: float) -> Outcome:
    found = [
        e for e in events
        if e.source == exp.where and e.kind == "alarm" and e.t >= t0 - 0.5
        and e.data.get("state") == exp.state and _matches(exp, e.data)
    ]  # fmt: skip
    if not found:
        return Outcome(exp, False, f"no {exp.state} {exp.rule} alarm at {exp.where} after the trigger")
    first = min(found, key=lambda e: e.t)
    ms = (first.t - t0) * 1000
    if exp.not_before_ms and ms < exp.not_before_ms:
        return Outcome(exp, False, f"came {ms:.0f} ms after the trigger, before {exp.not_before_ms:.0f} ms", ms)
    if ms > exp.within_ms:
        return Outcome(exp, False, f"came {ms:.0f} ms after the trigger, later than {exp.within_ms:.0f} ms", ms)
    return Outcome(exp, True, f"{exp.state} at {exp.where} {ms:.0f} ms after the trigger", ms)


def _no_alarm(exp: Expect, events: Sequence[Event], t0: float) -> Outcome:
    end = t0 + exp.within_ms / 1000
    found = [
        e for e in events
        if e.source == exp.where and e.kind == "alarm" and t0 <= e.t <= end
        and e.data.get("state") == exp.state and _matches(exp, e.data)
    ]  # fmt: skip
    if found:
        return Outcome(exp, False, f"{exp.rule} came {(found[0].t - t0) * 1000:.0f} ms after the trigger")
    return Outcome(exp, True, f"no {exp.rule} alarm within {exp.within_ms:.0f} ms")


def _snapshot(exp: Expect, events: Sequence[Event]) -> Outcome:
    snaps = [e for e in events if e.kind == "snapshot" and e.data.get("name") == exp.after]
    if not snaps:
        return Outcome(exp, False, f"no snapshot {exp.after!r} was taken (control socket unreachable?)")
    alarms = [a for a in snaps[-1].data.get("alarms", []) if _matches(exp, a)]
    states = sorted({str(a.get("state")) for a in alarms})
    if exp.kind == "inactive":
        ok = not alarms
        return Outcome(exp, ok, "not active" if ok else f"still active ({', '.join(states)})")
    wanted = exp.state if exp.state != "active" else None
    ok = bool(alarms) and (wanted is None or wanted in states)
    return Outcome(exp, ok, f"states: {', '.join(states) or 'none'}")


def _no_loss(exp: Expect, events: Sequence[Event]) -> Outcome:
    local = {e.data["obs_id"] for e in events if e.source == "local" and e.kind == "obs"}
    at_broker: dict[str, dict[str, Any]] = {}
    changed = copies = 0
    for e in events:
        if e.source == "broker" and e.kind == "obs":
            prior = at_broker.setdefault(e.data["obs_id"], e.data)
            copies += prior is not e.data
            changed += prior != e.data  # a resend must be the same record
    missing = local - set(at_broker)
    if not local:
        return Outcome(exp, False, "the gateway's sink recorded no observation")
    if missing or changed:
        lost = f"{len(missing)} of {len(local)} observations missing at the broker"
        return Outcome(exp, False, f"{lost}, {changed} changed")
    resent = f" ({copies} resends, identical)" if copies else ""
    if copies < exp.resends_at_least or 0 <= exp.resends_at_most < copies:
        bounds = f"at least {exp.resends_at_least:.0f}, at most {exp.resends_at_most:.0f} (-1: any)"
        return Outcome(exp, False, f"{copies} resent copies at the broker; expected {bounds}")
    return Outcome(exp, True, f"all {len(local)} observations at the broker once after dedupe by obs_id{resent}")


def _recovery(exp: Expect, events: Sequence[Event], t0: float) -> Outcome:
    found = [
        e for e in events
        if e.source == exp.where and e.kind == "obs" and e.t >= t0
        and (not exp.device or e.data.get("device_id") == exp.device)
        and float(e.data.get("received_t", e.t)) >= t0
    ]  # fmt: skip
    if not found:
        return Outcome(exp, False, f"no new observation at {exp.where} after the step")
    ms = (min(e.t for e in found) - t0) * 1000
    ok = ms <= exp.within_ms
    return Outcome(exp, ok, f"first new observation at {exp.where} {ms:.0f} ms after the step", ms)


def _rss_bounded(exp: Expect, events: Sequence[Event]) -> Outcome:
    """The gateway's RSS levels off: after the first quarter (start-up), the highest RSS
    of the second half of the run is at most `max_mib` above that of the first half.
    A leak grows it in every half; a bounded buffer filling up levels off."""
    rss = [e.data["rss_bytes"] / 2**20 for e in sorted(events, key=lambda e: e.t) if e.kind == "sample"]
    rss = rss[len(rss) // 4 :]
    if len(rss) < 4:
        return Outcome(exp, False, f"{len(rss)} RSS samples after start-up: too few to judge")
    half = len(rss) // 2
    first, second = max(rss[:half]), max(rss[half:])
    ok = second - first <= exp.max_mib
    return Outcome(
        exp, ok, f"RSS max {first:.1f} MiB then {second:.1f} MiB ({second - first:+.1f}, bound {exp.max_mib:g})"
    )


def _decide(exp: Expect, events: Sequence[Event], t0: float, scenario: Scenario) -> Outcome:
    if exp.kind == "alarm":
        return alarm_outcome(exp, events, t0)
    if exp.kind == "no_alarm":
        return _no_alarm(exp, events, t0)
    if exp.kind in ("active", "inactive"):
        return _snapshot(exp, events)
    if exp.kind == "no_loss":
        return _no_loss(exp, events)
    if exp.kind == "rss_bounded":
        return _rss_bounded(exp, events)
    if exp.kind in ("quarantined", "charted", "backlog"):
        from hil.suite.check_planes import decide  # it builds on this module's types

        return decide(exp, events)
    if exp.kind == "no_missed_alarm":
        from hil.suite.check_missed import missed_alarms  # it builds on this module's types

        return missed_alarms(exp, scenario, events)
    return _recovery(exp, events, t0)


def check(scenario: Scenario, events: Sequence[Event], start_t: float) -> list[Outcome]:
    """Every expectation of the scenario, decided over the recorded events."""
    triggers = trigger_times(events)
    out: list[Outcome] = []
    for exp in scenario.expects:
        if exp.after and exp.after not in triggers:
            out.append(Outcome(exp, False, f"step {exp.after!r} was never played"))
            continue
        out.append(_decide(exp, events, triggers[exp.after] if exp.after else start_t, scenario))
    return out


def open_until(scenario: Scenario, events: Sequence[Event], start_t: float) -> float:
    """The time until which the run must go on for a window to be judged whole: the
    latest end of a window (`WINDOWED`) whose step's mark has come and whose verdict
    the events do not settle yet. An alarm or a recovery settles its window when it
    comes (in time, early or late: waiting changes nothing); a `no_alarm` window when
    the alarm comes (failed) or at its end. 0.0 when nothing is open. Events the run
    reads only at its end (the local sink's, `where = "local"`) settle nothing here: such
    a window is waited for to its end.

    A mark can come later than the scenario's author planned (a box that boots slowly
    after a power cut marks `cut/end` late): without this the run ended on its fixed
    duration and a window cut short read as "no alarm", not as "the box was slow"."""
    triggers = trigger_times(events)
    until = 0.0
    for exp in scenario.expects:
        if exp.kind not in WINDOWED or (exp.after and exp.after not in triggers):
            continue
        t0 = triggers[exp.after] if exp.after else start_t
        outcome = _decide(exp, events, t0, scenario)
        if outcome.latency_ms is not None or (exp.kind == "no_alarm" and not outcome.ok):
            continue
        until = max(until, t0 + exp.within_ms / 1000)
    return until
