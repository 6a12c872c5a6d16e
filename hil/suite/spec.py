"""The suite format: scenarios, each with its bed (devices), a timeline of steps and
expectations. Parsed from TOML into frozen dataclasses; anything wrong is one
`SuiteError` line naming the key (the command line prints it and exits 2).

Deliberately small: a step is an action at a time; what an action needs is checked
here, so a run never starts with a suite it cannot play.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "ACTIONS",
    "BOX_FAULTS",
    "ENDS",
    "EXPECTS",
    "MILESTONES",
    "Device",
    "Expect",
    "Scenario",
    "Step",
    "Suite",
    "SuiteError",
    "load_suite",
    "parse_suite",
]


class SuiteError(ValueError):
    """A suite file the bench cannot play (one line for the command line)."""


# The bench's own encoders: their vitals can be steered step by step.
FAMILIES: Final = ("masimo", "nonin", "intellivue", "datex", "medibus", "hl7", "ble")
# What a step does; the keys each needs beyond `at_s` and `action`.
ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    "vitals": ("device",),  # set spo2 / pulse / sensor_off from now on
    "cable_pull": ("device",),  # the pty closes for down_s
    "garbage": ("device",),  # a burst of bytes no codec accepts
    "silence": ("device",),  # the device stops sending for down_s (stale)
    "clock_step": ("device",),  # the device's clock jumps by offset_s (the box's own clock is left alone)
    "broker_down": (),
    "broker_up": (),
    "broker_stall": (),  # SIGSTOP the broker for down_s: publishes sent, no PUBACK (then SIGCONT)
    "kill_gateway": (),  # kill -9, restarted after down_s
    "ack": ("bed",),  # control socket: acknowledge (rule optional)
    "pause": ("bed",),  # control socket: audio pause
    "snapshot": (),  # control socket: the active alarms, for `active` expectations
    # Faults of the box itself (hil/suite/faults.py; which target plays which: its `plays`).
    "partition": (),  # the box's network dropped (nftables) for down_s, then healed
    "disk_full": (),  # the box's /data filled for down_s, then freed
    "box_clock_step": (),  # the box's own clock jumps by offset_s for down_s, then back
    "power_cut": (),  # the box loses power (QEMU killed), boots again after down_s
    "ota": (),  # the fleet publishes a release: the box downloads, installs, reboots into it, commits
    # The device restarts with its cable still in, each family in its own terms (hil/suite/families.py).
    "device_reboot": ("device",),  # off for down_s, then back in its power-on state
}
# What happens to the box itself (hil/suite/faults.py); each target says which it plays.
BOX_FAULTS: Final = ("partition", "disk_full", "box_clock_step", "power_cut", "ota")
# Steps with a duration whose end is a step of its own: an expectation may say
# `after = "NAME/end"` (the heal, the space freed, the power back, the update committed,
# the device booted).
ENDS: Final = (*BOX_FAULTS, "device_reboot")
# Milestones a step's end reports on the way, named `NAME/<milestone>` (an OTA's reboot:
# the box off at `down`, its gateway started again at `up`).
MILESTONES: Final = {"ota": ("down", "up")}
EXPECTS: Final = (
    "alarm", "no_alarm", "active", "inactive", "no_loss", "recovery", "rss_bounded", "quarantined", "charted",
    "backlog", "no_missed_alarm",
)  # fmt: skip
WHERE: Final = ("local", "broker")


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    family: str
    bed: str
    rate_hz: float = 2.0
    spo2: float = 97.0
    pulse: float = 72.0
    patient: str = ""  # paired to this patient at `bed` before the start; "" = unpaired (quarantined)


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float
    action: str
    name: str = ""  # expectations refer to a step by name (its trigger time)
    device: str = ""
    bed: str = ""
    rule: str = ""
    down_s: float = 3.0
    spo2: float | None = None
    pulse: float | None = None
    sensor_off: bool | None = None
    offset_s: float = 0.0  # clock_step, box_clock_step
    from_step: str = ""  # at_s counts from this step's mark (e.g. "ota/up"), not the scenario's start


@dataclass(frozen=True, slots=True)
class Expect:
    kind: str
    after: str = ""  # the step whose trigger time counts; "" = the scenario's start
    rule: str = ""
    bed: str = ""
    priority: str = ""
    state: str = "active"  # an AlarmEventState: active, acknowledged, audio_paused, latched, cleared, escalated
    where: str = "broker"
    within_ms: float = 5000.0
    not_before_ms: float = 0.0  # a condition delay: the alarm must not come earlier
    device: str = ""
    max_mib: float = 4.0  # rss_bounded: the most the gateway's RSS may grow between the run's halves
    until: str = ""  # backlog, no_missed_alarm: the step that ends the window (the outage, the OTA)
    min_count: float = 0.0  # backlog: observations recorded offline; no_missed_alarm: episodes judged
    each: str = ""  # no_missed_alarm: the steps that start an episode (names beginning with this)
    resends_at_least: float = 0.0  # no_loss: the fault must have caused this many resent copies
    resends_at_most: float = -1.0  # no_loss: at most this many resent copies (-1: any number)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration_s: float
    devices: tuple[Device, ...]
    steps: tuple[Step, ...]
    expects: tuple[Expect, ...]
    rules_path: str = ""  # the gateway's rule file; "" = the packaged default set


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    scenarios: tuple[Scenario, ...] = field(default_factory=tuple)


def _table(raw: dict[str, Any], cls: type[Any], where: str, skip: tuple[str, ...] = ()) -> Any:
    known = {f for f in cls.__dataclass_fields__ if f not in skip}
    for key in raw:
        if key not in known:
            raise SuiteError(f"{where}: unknown key {key!r}")
    try:
        return cls(**{k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in raw.items()})
    except TypeError as exc:
        raise SuiteError(f"{where}: {exc}") from None


def _check_step(step: Step, devices: set[str], where: str) -> None:
    if step.action not in ACTIONS:
        raise SuiteError(f"{where}.action: unknown {step.action!r}; known: {', '.join(ACTIONS)}")
    for key in ACTIONS[step.action]:
        if not getattr(step, key):
            raise SuiteError(f"{where}: {step.action} needs {key}")
    if step.device and step.device not in devices:
        raise SuiteError(f"{where}.device: no device {step.device!r} in this scenario")
    if step.at_s < 0 or step.down_s <= 0:
        raise SuiteError(f"{where}: at_s must be >= 0 and down_s > 0")


def _check_expect(exp: Expect, steps: set[str], where: str) -> None:
    if exp.kind not in EXPECTS:
        raise SuiteError(f"{where}.kind: unknown {exp.kind!r}; known: {', '.join(EXPECTS)}")
    if exp.after and exp.after not in steps:
        raise SuiteError(f"{where}.after: no step named {exp.after!r}")
    if exp.where not in WHERE:
        raise SuiteError(f"{where}.where: {exp.where!r}; use local or broker")
    if exp.kind in ("alarm", "no_alarm", "active", "inactive", "no_missed_alarm") and not exp.rule:
        raise SuiteError(f"{where}: {exp.kind} needs rule")
    if exp.kind in ("active", "inactive") and not exp.after:
        raise SuiteError(f"{where}: {exp.kind} needs after (a snapshot step)")
    if exp.kind in ("quarantined", "charted") and not exp.device:
        raise SuiteError(f"{where}: {exp.kind} needs device")
    if exp.kind == "backlog" and not (exp.after and exp.until in steps):
        raise SuiteError(f"{where}: backlog needs after and until (the outage's first and last step)")
    if exp.kind == "no_missed_alarm" and not (exp.after and exp.until in steps and exp.each):
        raise SuiteError(f"{where}: no_missed_alarm needs after, until (the window) and each (episode step names)")
    if exp.each and not any(name.startswith(exp.each) for name in steps):
        raise SuiteError(f"{where}.each: no step name begins with {exp.each!r}")


def _check_from(steps: tuple[Step, ...], where: str) -> None:
    """A relative step counts from a step of the timeline itself (or its end, a milestone),
    never from another relative step (no chains that could wait on each other)."""
    fixed = {s.name for s in steps if s.name and not s.from_step}
    marks = fixed | {f"{s.name}/end" for s in steps if s.name in fixed and s.action in ENDS}
    marks |= {f"{s.name}/{m}" for s in steps if s.name in fixed for m in MILESTONES.get(s.action, ())}
    for i, step in enumerate(steps):
        if step.from_step and step.from_step not in marks:
            raise SuiteError(f"{where}.step[{i}].from_step: no step of the timeline named {step.from_step!r}")


def _scenario(raw: dict[str, Any], where: str, base: Path) -> Scenario:
    name, duration = raw.get("name"), raw.get("duration_s")
    if not isinstance(name, str) or not isinstance(duration, int | float) or duration <= 0:
        raise SuiteError(f"{where}: needs name (string) and duration_s (> 0)")
    devices = tuple(_table(d, Device, f"{where}.device[{i}]") for i, d in enumerate(raw.get("device", [])))
    if not devices:
        raise SuiteError(f"{where}: needs at least one [[scenario.device]]")
    for i, dev in enumerate(devices):
        if dev.family not in FAMILIES:
            raise SuiteError(f"{where}.device[{i}].family: {dev.family!r}; the bench steers {', '.join(FAMILIES)}")
    steps = tuple(_table(s, Step, f"{where}.step[{i}]") for i, s in enumerate(raw.get("step", [])))
    ids = {d.id for d in devices}
    for i, step in enumerate(steps):
        _check_step(step, ids, f"{where}.step[{i}]")
        if step.action == "clock_step" and any(d.id == step.device and d.family == "ble" for d in devices):
            raise SuiteError(f"{where}.step[{i}]: clock_step: a BLE oximeter's measurements carry no time")
    _check_from(steps, where)
    expects = tuple(_table(e, Expect, f"{where}.expect[{i}]") for i, e in enumerate(raw.get("expect", [])))
    named = {s.name for s in steps if s.name} | {f"{s.name}/end" for s in steps if s.name and s.action in ENDS}
    named |= {f"{s.name}/{m}" for s in steps if s.name for m in MILESTONES.get(s.action, ())}
    for i, exp in enumerate(expects):
        _check_expect(exp, named, f"{where}.expect[{i}]")
    rules = raw.get("rules_path", "")
    if rules and not (base / rules).is_file():
        raise SuiteError(f"{where}.rules_path: no such file {rules!r}")
    return Scenario(name, float(duration), devices, steps, expects, str(base / rules) if rules else "")


def parse_suite(text: str, base: Path, where: str = "suite") -> Suite:
    """The suite in `text`; relative paths are taken from `base`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{where}: not TOML: {exc}") from None
    scenarios = raw.get("scenario", [])
    if not isinstance(scenarios, list) or not scenarios:
        raise SuiteError(f"{where}: needs at least one [[scenario]]")
    parsed = tuple(_scenario(s, f"{where}: scenario[{i}]", base) for i, s in enumerate(scenarios))
    return Suite(str(raw.get("name", "suite")), parsed)


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    return parse_suite(text, path.parent, str(path))
