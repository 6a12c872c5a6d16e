"""Alarm rule files: TOML -> validated, frozen rule specs.

A rule file is a list of `[[rule]]` tables. Every error names the rule id and the
key (`rules.toml: rule 'spo2-low': below: must be a number`), one line, so
`bedside rules check` can exit 2 with it. Rules are data; evaluation lives in
`rules.engine`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

from appliance.core.errors import BedsideRulesError
from appliance.core.vocab import Priority, TechnicalKind

__all__ = [
    "DEFAULT_RULES_PATH",
    "PRIORITIES",
    "Priority",
    "Rule",
    "RuleError",
    "RuleSet",
    "load_rules",
    "parse_rules",
]

PRIORITIES: Final = tuple(Priority)
DEFAULT_RULES_PATH: Final = Path(__file__).with_name("default_adult.toml")
# A technical rule targets one kind of the vocabulary.
_TECHNICAL_KINDS: Final = frozenset(k.value for k in TechnicalKind)
KINDS: Final = ("limit", "rate", "aggregate", "composite", "technical", "device")
AGGREGATES: Final = ("mean", "min", "max")
# Bounds a rule window so one rule cannot make the engine hold hours of samples.
MAX_WINDOW_S: Final = 3600.0


class RuleError(BedsideRulesError, ValueError):
    """A rule file is unreadable or invalid; the message is one line."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: str
    priority: Priority = Priority.MEDIUM
    message: str = ""
    metric: str = ""
    above: float | None = None
    below: float | None = None
    # Hysteresis: once raised, the condition ends only past this value.
    clear: float | None = None
    # Alarm condition delay: the condition must hold this long before it alarms.
    for_s: float = 0.0
    latching: bool = False
    escalate_after_s: float = 0.0  # medium -> high if unresolved this long; 0 = never
    window_s: float = 0.0
    function: str = "mean"
    rise_per_min: float | None = None
    fall_per_min: float | None = None
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    within_s: float = 60.0
    event: str = ""
    flags: tuple[tuple[str, Priority], ...] = ()  # device flag -> priority
    unknown_priority: Priority | None = None  # for device flags not in `flags`
    beds: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()  # bed -> overrides

    def threshold(self, bed_id: str) -> tuple[float | None, float | None, float | None]:
        """(above, below, clear) for a bed, with its overrides applied."""
        above, below, clear = self.above, self.below, self.clear
        for bed, overrides in self.beds:
            if bed == bed_id:
                values = dict(overrides)
                above = values.get("above", above)
                below = values.get("below", below)
                clear = values.get("clear", clear)
        return above, below, clear


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    audio_pause_s: float = 120.0


_COMMON: Final = {"id", "kind", "priority", "message", "latching", "for_s", "escalate_after_s"}
_ALLOWED: Final[dict[str, set[str]]] = {
    "limit": _COMMON | {"metric", "above", "below", "clear", "beds"},
    "rate": _COMMON | {"metric", "window_s", "rise_per_min", "fall_per_min"},
    "aggregate": _COMMON | {"metric", "window_s", "function", "above", "below", "clear", "beds"},
    "composite": _COMMON | {"all_of", "any_of", "within_s"},
    "technical": _COMMON | {"event"},
    "device": _COMMON | {"flags", "unknown_priority"},
}
_NUMBERS: Final = (
    "above", "below", "clear", "for_s", "escalate_after_s", "window_s",
    "rise_per_min", "fall_per_min", "within_s",
)  # fmt: skip


class _Builder:
    def __init__(self, source: str, rule_id: str) -> None:
        self.source = source
        self.rule_id = rule_id

    def fail(self, key: str, problem: str) -> NoReturn:
        raise RuleError(f"{self.source}: rule {self.rule_id!r}: {key}: {problem}")

    def number(
        self, raw: dict[str, Any], key: str, lo: float = float("-inf"), hi: float = float("inf"), where: str = ""
    ) -> Any:
        if key not in raw:
            return None
        value, where = raw[key], where or key
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a number, not {type(value).__name__}")
        # nan compares false with every limit and value, so a nan limit never alarms.
        if not math.isfinite(value):
            self.fail(where, f"must be a finite number, not {value}")
        if not lo <= value <= hi:
            self.fail(where, f"must be between {lo:g} and {hi:g}")
        return float(value)

    def text(self, raw: dict[str, Any], key: str, choices: tuple[str, ...] | None = None) -> Any:
        if key not in raw:
            return None
        value = raw[key]
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {type(value).__name__}")
        if choices is not None and value not in choices:
            self.fail(key, "must be one of " + ", ".join(choices))
        return value


def _rule(raw: Any, index: int, source: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{source}: rule #{index + 1}: must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleError(f"{source}: rule #{index + 1}: id: missing or not a string")
    b = _Builder(source, rule_id)
    kind = b.text(raw, "kind", KINDS)
    if kind is None:
        b.fail("kind", "missing required key")
    for key in raw:
        if key not in _ALLOWED[kind]:
            b.fail(key, f"unknown key for a {kind} rule")
    kwargs: dict[str, Any] = {"id": rule_id, "kind": kind, **_scalars(b, raw), **_structured(b, raw)}
    rule = Rule(**kwargs)
    _check_kind(b, rule)
    return rule


def _scalars(b: _Builder, raw: dict[str, Any]) -> dict[str, Any]:
    """Numbers, priorities, texts and flags a rule may carry, checked."""
    kwargs: dict[str, Any] = {}
    for key in _NUMBERS:
        value = b.number(raw, key, 0.0 if key.endswith("_s") else float("-inf"))
        if value is not None:
            kwargs[key] = value
    for key in ("priority", "unknown_priority"):
        value = b.text(raw, key, PRIORITIES)
        if value is not None:
            kwargs[key] = Priority(value)
    for key in ("message", "metric", "event"):
        value = b.text(raw, key)
        if value is not None:
            kwargs[key] = value
    if kwargs.get("event") in _TECHNICAL_KINDS:
        kwargs["event"] = TechnicalKind(kwargs["event"])
    kwargs["function"] = b.text(raw, "function", AGGREGATES) or "mean"
    if "latching" in raw:
        if not isinstance(raw["latching"], bool):
            b.fail("latching", "must be a boolean")
        kwargs["latching"] = raw["latching"]
    return kwargs


def _structured(b: _Builder, raw: dict[str, Any]) -> dict[str, Any]:
    """Rule-id lists, flag tables and per-bed overrides, checked."""
    kwargs: dict[str, Any] = {}
    for key in ("all_of", "any_of"):
        if key in raw:
            ids = raw[key]
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                b.fail(key, "must be a non-empty list of rule ids")
            kwargs[key] = tuple(ids)
    if "flags" in raw:
        flags = raw["flags"]
        if not isinstance(flags, dict) or not all(p in PRIORITIES for p in flags.values()):
            b.fail("flags", "must map device flag names to high, medium or low")
        kwargs["flags"] = tuple(sorted((flag, Priority(p)) for flag, p in flags.items()))
    if "beds" in raw:
        kwargs["beds"] = _beds(b, raw["beds"])
    return kwargs


def _beds(b: _Builder, raw: Any) -> tuple[tuple[str, tuple[tuple[str, float], ...]], ...]:
    if not isinstance(raw, dict):
        b.fail("beds", "must be a table of bed ids")
    out = []
    for bed, overrides in raw.items():
        if not isinstance(overrides, dict):
            b.fail(f"beds.{bed}", "must be a table")
        for key in overrides:
            if key not in ("above", "below", "clear"):
                b.fail(f"beds.{bed}.{key}", "only above, below and clear can be overridden per bed")
            b.number(overrides, key, where=f"beds.{bed}.{key}")
        out.append((bed, tuple(sorted((k, float(v)) for k, v in overrides.items()))))
    return tuple(out)


def _check_kind(b: _Builder, r: Rule) -> None:
    if r.kind in ("limit", "aggregate", "rate") and not r.metric:
        b.fail("metric", "missing required key")
    if r.kind in ("limit", "aggregate"):
        if (r.above is None) == (r.below is None):
            b.fail("above", "give exactly one of above or below (use two rules for a band)")
        if r.clear is not None and r.above is not None and r.clear > r.above:
            b.fail("clear", "must not be above the 'above' limit (hysteresis)")
        if r.clear is not None and r.below is not None and r.clear < r.below:
            b.fail("clear", "must not be below the 'below' limit (hysteresis)")
    if r.kind in ("aggregate", "rate") and not 0 < r.window_s <= MAX_WINDOW_S:
        b.fail("window_s", f"must be above 0 and at most {MAX_WINDOW_S:g}")
    if r.kind == "rate" and r.rise_per_min is None and r.fall_per_min is None:
        b.fail("rise_per_min", "give rise_per_min and/or fall_per_min")
    if r.kind == "composite" and bool(r.all_of) == bool(r.any_of):
        b.fail("all_of", "give exactly one of all_of or any_of")
    if r.kind == "technical" and r.event not in _TECHNICAL_KINDS:
        b.fail("event", "must be one of " + ", ".join(sorted(_TECHNICAL_KINDS)))
    if r.kind == "device" and not r.flags and r.unknown_priority is None:
        b.fail("flags", "missing required key")


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{source}: not valid TOML: {exc}") from exc
    for key in raw:
        if key not in ("rule", "audio_pause_s"):
            raise RuleError(f"{source}: {key}: unknown key (expected [[rule]] tables and audio_pause_s)")
    pause = raw.get("audio_pause_s", 120.0)
    if isinstance(pause, bool) or not isinstance(pause, int | float) or not 10 <= pause <= 600:
        raise RuleError(f"{source}: audio_pause_s: must be a number between 10 and 600")
    entries = raw.get("rule", [])
    if not isinstance(entries, list):
        raise RuleError(f"{source}: rule: must be an array of tables ([[rule]])")
    rules = tuple(_rule(r, i, source) for i, r in enumerate(entries))
    ids = [r.id for r in rules]
    for r in rules:
        if ids.count(r.id) > 1:
            raise RuleError(f"{source}: rule {r.id!r}: id: duplicate rule id")
        for ref in r.all_of + r.any_of:
            if ref not in ids or ref == r.id:
                raise RuleError(f"{source}: rule {r.id!r}: all_of/any_of: unknown rule {ref!r}")
            if rules[ids.index(ref)].kind == "composite":
                raise RuleError(f"{source}: rule {r.id!r}: all_of/any_of: {ref!r} is composite (no nesting)")
    return RuleSet(rules, float(pause))


def load_rules(path: str | Path) -> RuleSet:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot read: {exc}") from exc
    return parse_rules(text, str(path))
