"""The rule engine: `evaluate(state, event, now) -> (state, actions)`.

Pure decision core: no I/O, no clock, no awaiting. Time is the `now` argument
(seconds since the epoch), so replaying a recorded day gives the same alarms.
For speed the state object is updated in place and returned; callers own it.

Rules are compiled into dispatch tables (metric -> rules, technical kind ->
rules), so an observation costs only the rules for its own metric. Timers
(condition delay, audio pause, escalation, composite windows) advance on `Tick`
and touch only the alarms that have a timer running.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from appliance.core.model import AlarmEvent, Observation, TechnicalEvent
from appliance.core.vocab import AlarmEventState, Priority, TechnicalKind
from rules.conditions import Windows, limit_condition, window_condition
from rules.spec import Rule, RuleSet
from rules.states import AlarmState, Input, next_state

__all__ = ["Ack", "Action", "Alarm", "Annunciation", "Engine", "EngineState", "Pause", "Tick", "evaluate"]

MAX_OBS_IDS: Final = 8
MAX_SUBJECTS_SHOWN: Final = 4
_RANK: Final[dict[str, int]] = {Priority.HIGH: 3, Priority.MEDIUM: 2, Priority.LOW: 1}
# Device state bits that are not alarm conditions themselves.
_NOT_CONDITIONS: Final = frozenset({"alarm_active", "alarm_silenced"})
# Technical events that report a moment, not a condition with an end.
_ONE_SHOT: Final = frozenset(
    {
        TechnicalKind.RECORDS_DROPPED,
        TechnicalKind.DRIVER_CRASHED,
        TechnicalKind.BAD_FRAME,
        TechnicalKind.OUTPUT_FAILURE,
        TechnicalKind.STORE_CORRUPT,
        TechnicalKind.CONNECTION_REFUSED,
        TechnicalKind.WRONG_MODE,
    }
)
_AUDIBLE: Final = frozenset({AlarmState.ACTIVE, AlarmState.LATCHED})
_VISIBLE: Final = _AUDIBLE | {AlarmState.AUDIO_PAUSED, AlarmState.ACKNOWLEDGED}


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: advance delays, pauses, escalations."""


@dataclass(frozen=True, slots=True)
class Ack:
    bed_id: str | None = None  # None = every bed
    rule_id: str | None = None  # None = every alarm at the bed


@dataclass(frozen=True, slots=True)
class Pause:
    bed_id: str | None = None


@dataclass(frozen=True, slots=True)
class Annunciation:
    """What the box must signal now: the highest audible priority and visual state."""

    audible: Priority | None = None
    visual: Priority | None = None
    active_count: int = 0


Event = Observation | TechnicalEvent | Tick | Ack | Pause
Action = AlarmEvent | Annunciation


@dataclass(slots=True)
class Alarm:
    key: str  # rule id, or rule id:flag for device-reported alarms
    rule: Rule
    bed_id: str
    priority: Priority
    state: AlarmState = AlarmState.INACTIVE
    cond: bool = False
    pending_since: float = 0.0
    activated_at: float = 0.0
    paused_until: float = 0.0
    escalated: bool = False
    last_true: float | None = None
    alarm_id: str = ""
    obs_ids: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_OBS_IDS))
    last_emitted: str = ""
    # The devices a technical alarm stands for (every device at the bed with the
    # condition), so "Device disconnected" says which ones.
    subjects: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        text = self.rule.message or self.key
        if not self.subjects:
            return text
        shown = ", ".join(self.subjects[:MAX_SUBJECTS_SHOWN])
        more = len(self.subjects) - MAX_SUBJECTS_SHOWN
        return f"{text}: {shown}" + (f" (+{more} more)" if more > 0 else "")

    @property
    def device_id(self) -> str | None:
        """The one device the alarm is about, if there is one."""
        if len(self.subjects) == 1:
            return self.subjects[0]
        _, at, device = self.key.rpartition("@")
        return device if at and self.rule.kind == "device" else None


@dataclass(slots=True)
class EngineState:
    alarms: dict[tuple[str, str], Alarm] = field(default_factory=dict)
    windows: Windows = field(default_factory=Windows)
    technical: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    timed: set[tuple[str, str]] = field(default_factory=set)
    visible: Counter[str] = field(default_factory=Counter)
    audible: Counter[str] = field(default_factory=Counter)
    device_flags: dict[tuple[str, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    annunciation: Annunciation = Annunciation()


_GRADES: Final[tuple[Priority, ...]] = tuple(Priority)


def _reported_priority(flag: str) -> Priority | None:
    """Devices that grade their own alarms (patient monitors) name the grade in the flag:
    `alarm_high_...`. A site's explicit mapping still wins over it."""
    for priority in _GRADES:
        if flag.startswith(f"alarm_{priority}_"):
            return priority
    return None


def _needs_timer(alarm: Alarm) -> bool:
    if alarm.state in (AlarmState.PENDING, AlarmState.AUDIO_PAUSED):
        return True
    if alarm.rule.kind == "composite" and alarm.cond:
        return True  # its time span may run out
    return (
        alarm.state is AlarmState.ACTIVE
        and alarm.priority is Priority.MEDIUM
        and not alarm.escalated
        and alarm.rule.escalate_after_s > 0
    )


def utc(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


class Engine:
    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.by_metric: dict[str, list[Rule]] = defaultdict(list)
        self.by_technical: dict[str, list[Rule]] = defaultdict(list)
        self.device_rules: list[Rule] = []
        self.composites_of: dict[str, list[Rule]] = defaultdict(list)
        self.composites: list[Rule] = []
        for rule in ruleset.rules:
            if rule.kind in ("limit", "rate", "aggregate"):
                self.by_metric[rule.metric].append(rule)
            elif rule.kind == "technical":
                self.by_technical[rule.event].append(rule)
            elif rule.kind == "device":
                self.device_rules.append(rule)
            else:
                self.composites.append(rule)
                for ref in rule.all_of + rule.any_of:
                    self.composites_of[ref].append(rule)
        # metric -> the distinct spans its window rules judge over (one Window each).
        self.spans_s: dict[str, tuple[float, ...]] = {
            metric: tuple(sorted({r.window_s for r in rules if r.kind != "limit" and r.window_s > 0}))
            for metric, rules in self.by_metric.items()
        }

    # -- entry point -------------------------------------------------------------
    def evaluate(self, state: EngineState, event: Event, now: float) -> tuple[EngineState, list[Action]]:
        actions: list[Action] = []
        if isinstance(event, Observation):
            self._observation(state, event, now, actions)
        elif isinstance(event, TechnicalEvent):
            self._technical(state, event, now, actions)
        elif isinstance(event, Ack | Pause):
            self._operator(state, event, now, actions)
        elif isinstance(event, Tick):
            # Timers advance only on ticks: an observation never pays for them.
            self._timers(state, now, actions)
        annunciation = self.annunciation(state)
        if annunciation != state.annunciation:
            state.annunciation = annunciation
            actions.append(annunciation)
        return state, actions

    @staticmethod
    def annunciation(state: EngineState) -> Annunciation:
        # From counters kept up to date on every change: O(1), not O(alarms).
        audible = max((_RANK[p] for p, n in state.audible.items() if n), default=0)
        visual = max((_RANK[p] for p, n in state.visible.items() if n), default=0)
        names: dict[int, Priority | None] = {0: None, 1: Priority.LOW, 2: Priority.MEDIUM, 3: Priority.HIGH}
        return Annunciation(names[audible], names[visual], sum(state.visible.values()))

    @staticmethod
    def _account(state: EngineState, alarm: Alarm, sign: int) -> None:
        if alarm.state in _VISIBLE:
            state.visible[alarm.priority] += sign
            if alarm.state in _AUDIBLE:
                state.audible[alarm.priority] += sign

    # -- inputs ------------------------------------------------------------------
    def _observation(self, state: EngineState, obs: Observation, now: float, actions: list[Action]) -> None:
        rules = self.by_metric.get(obs.metric)
        if rules and obs.value is not None and obs.quality != "invalid":
            spans = self.spans_s.get(obs.metric)
            if spans:
                state.windows.add(obs.bed_id, obs.metric, now, obs.value, spans)
            for rule in rules:
                alarm = self._alarm(state, obs.bed_id, rule.id, rule)
                cond: bool | None
                if rule.kind == "limit":
                    cond = limit_condition(rule, obs.bed_id, obs.value, alarm.cond)
                else:
                    window = state.windows.view(obs.bed_id, obs.metric, rule.window_s)
                    cond = window_condition(rule, window, now, alarm.cond)
                if cond is not None:
                    self._set(state, alarm, cond, now, actions, obs_id=obs.obs_id)
        for rule in self.device_rules:
            mapping = dict(rule.flags)
            raised = {f for f in obs.flags if f.startswith("alarm_") and f not in _NOT_CONDITIONS}
            if rule.unknown_priority is None:
                raised &= set(mapping)
            # One alarm per device and flag: another device at the bed cannot clear it.
            seen = state.device_flags[(obs.bed_id, obs.device_id, rule.id)]
            for flag in raised | seen:
                key = f"{rule.id}:{flag}@{obs.device_id}"
                priority = mapping.get(flag) or _reported_priority(flag) or rule.unknown_priority or rule.priority
                alarm = self._alarm(state, obs.bed_id, key, rule, priority)
                self._set(state, alarm, flag in raised, now, actions, obs_id=obs.obs_id)
            seen.clear()
            seen.update(raised)

    def _technical(self, state: EngineState, ev: TechnicalEvent, now: float, actions: list[Action]) -> None:
        kind, active = ev.kind, ev.active
        if kind == TechnicalKind.CONNECTED:
            kind, active = TechnicalKind.DISCONNECTED, False
        rules = self.by_technical.get(kind)
        if not rules:
            return
        bed = ev.bed_id or "unassigned"
        devices = state.technical[(bed, kind)]
        if active:
            devices.add(ev.device_id)
        else:
            devices.discard(ev.device_id)
        subjects = tuple(sorted(devices))
        for rule in rules:
            alarm = self._alarm(state, bed, rule.id, rule)
            renamed = alarm.subjects != subjects and bool(subjects)
            alarm.subjects = subjects or alarm.subjects  # a cleared alarm still says whose it was
            self._set(state, alarm, bool(devices), now, actions)
            if renamed and alarm.state not in (AlarmState.INACTIVE, AlarmState.PENDING):
                self._emit(alarm, AlarmEventState(alarm.state), now, actions)  # another device joined or left
            if kind in _ONE_SHOT:
                devices.clear()
                self._set(state, alarm, False, now, actions)

    def _operator(self, state: EngineState, cmd: Ack | Pause, now: float, actions: list[Action]) -> None:
        for alarm in state.alarms.values():
            if cmd.bed_id is not None and alarm.bed_id != cmd.bed_id:
                continue
            if isinstance(cmd, Ack):
                if cmd.rule_id is not None and cmd.rule_id not in (alarm.key, alarm.rule.id):
                    continue
                self._step(state, alarm, Input.ACK, now, actions)
            else:
                alarm.paused_until = now + self.ruleset.audio_pause_s
                self._step(state, alarm, Input.PAUSE, now, actions)

    # -- mechanics ---------------------------------------------------------------
    def _alarm(self, state: EngineState, bed: str, key: str, rule: Rule, priority: Priority | None = None) -> Alarm:
        alarm = state.alarms.get((bed, key))
        if alarm is None:
            alarm = Alarm(key, rule, bed, priority or rule.priority)
            state.alarms[(bed, key)] = alarm
        return alarm

    def _set(
        self, state: EngineState, alarm: Alarm, cond: bool, now: float, actions: list[Action], *, obs_id: str = ""
    ) -> None:
        if cond:
            alarm.last_true = now
            if obs_id:
                alarm.obs_ids.append(obs_id)
        if cond == alarm.cond:
            return
        alarm.cond = cond
        if cond:
            self._step(state, alarm, Input.COND_ON, now, actions)
        else:
            latch = Input.COND_OFF_LATCHING if alarm.rule.latching else Input.COND_OFF
            self._step(state, alarm, latch, now, actions)
        for composite in self.composites_of.get(alarm.rule.id, ()):
            self._composite(state, composite, alarm.bed_id, now, actions)

    def _composite(self, state: EngineState, rule: Rule, bed: str, now: float, actions: list[Action]) -> None:
        def recent(ref: str) -> bool:
            parts = [a for (b, k), a in state.alarms.items() if b == bed and a.rule.id == ref]
            return any(a.last_true is not None and now - a.last_true <= rule.within_s for a in parts)

        cond = all(map(recent, rule.all_of)) if rule.all_of else any(map(recent, rule.any_of))
        alarm = self._alarm(state, bed, rule.id, rule)
        if cond:
            state.timed.add((bed, rule.id))  # re-check when the span runs out
        self._set(state, alarm, cond, now, actions)

    def _step(self, state: EngineState, alarm: Alarm, inp: Input, now: float, actions: list[Action]) -> None:
        before = alarm.state
        after = next_state(before, inp)
        if after is before:
            return
        self._account(state, alarm, -1)
        alarm.state = after
        key = (alarm.bed_id, alarm.key)
        if after is AlarmState.PENDING:
            alarm.pending_since = now
            if alarm.rule.for_s <= 0:
                self._step(state, alarm, Input.DELAY_ELAPSED, now, actions)
                return
        if after is AlarmState.ACTIVE and before is AlarmState.PENDING:
            alarm.activated_at = now
            alarm.escalated = False
            alarm.priority = alarm.priority if alarm.rule.kind == "device" else alarm.rule.priority
            seed = f"{alarm.bed_id}|{alarm.key}|{now!r}"
            alarm.alarm_id = hashlib.blake2b(seed.encode(), digest_size=12).hexdigest()
        self._account(state, alarm, +1)
        if _needs_timer(alarm):
            state.timed.add(key)
        if after is AlarmState.INACTIVE:
            alarm.obs_ids.clear()
            if before is not AlarmState.PENDING:
                self._emit(alarm, AlarmEventState.CLEARED, now, actions)
            return
        if after is not AlarmState.PENDING:
            self._emit(alarm, AlarmEventState(after), now, actions)

    def _emit(self, alarm: Alarm, state_name: AlarmEventState, now: float, actions: list[Action]) -> None:
        # Content hash: the same alarm in the same state and priority is said once.
        digest = f"{alarm.alarm_id}|{state_name}|{alarm.priority}|{alarm.subjects}"
        if digest == alarm.last_emitted:
            return
        alarm.last_emitted = digest
        actions.append(
            AlarmEvent(
                alarm_id=alarm.alarm_id,
                rule_id=alarm.key,
                bed_id=alarm.bed_id,
                priority=alarm.priority,
                kind="technical" if alarm.rule.kind == "technical" else "physiological",
                state=state_name,
                time=utc(now),
                observation_ids=tuple(alarm.obs_ids),
                message=alarm.message,
                device_id=alarm.device_id,
            )
        )

    def _timers(self, state: EngineState, now: float, actions: list[Action]) -> None:
        for key in list(state.timed):
            alarm = state.alarms[key]
            rule = alarm.rule
            if rule.kind == "composite" and alarm.cond:
                self._composite(state, rule, alarm.bed_id, now, actions)
            if alarm.state is AlarmState.PENDING and now - alarm.pending_since >= rule.for_s:
                self._step(state, alarm, Input.DELAY_ELAPSED, now, actions)
            if alarm.state is AlarmState.AUDIO_PAUSED and now >= alarm.paused_until:
                self._step(state, alarm, Input.PAUSE_ELAPSED, now, actions)
            if (
                alarm.state in (AlarmState.ACTIVE, AlarmState.AUDIO_PAUSED)
                and alarm.priority is Priority.MEDIUM
                and not alarm.escalated
                and rule.escalate_after_s > 0
                and now - alarm.activated_at >= rule.escalate_after_s
            ):
                alarm.escalated = True
                self._account(state, alarm, -1)
                alarm.priority = Priority.HIGH
                self._account(state, alarm, +1)
                self._emit(alarm, AlarmEventState.ESCALATED, now, actions)
            if not _needs_timer(alarm):
                state.timed.discard(key)


def evaluate(engine: Engine, state: EngineState, event: Event, now: float) -> tuple[EngineState, list[Action]]:
    return engine.evaluate(state, event, now)
