"""The shared vocabularies: every emitted technical kind is a member, rules can target
each, and members serialize as the strings they replace."""

import ast
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.core.model import TECHNICAL_KINDS, AlarmEvent, TechnicalEvent, from_json_line, to_json_line
from appliance.core.vocab import AlarmState, Priority, Quality, TechnicalKind
from rules.engine import Engine, EngineState
from rules.spec import DEFAULT_RULES_PATH, RuleError, parse_rules

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "drivers", "rules", "ota", "hil")
# Helpers that take a technical kind as their first argument.
KIND_HELPERS = frozenset({"_event", "_technical", "_on_event", "_store_event", "report"})


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _strings(node: ast.expr | None) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for elt in node.elts:
            yield from _strings(elt)


def _emitted(tree: ast.AST) -> Iterator[str]:
    """String kinds handed to TechnicalEvent, the kind helpers and ConditionTracker."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name == "TechnicalEvent":
                yield from _strings(node.args[1] if len(node.args) > 1 else None)
                yield from (s for kw in node.keywords if kw.arg == "kind" for s in _strings(kw.value))
            elif name in KIND_HELPERS and node.args:
                yield from _strings(node.args[0])
            elif name == "ConditionTracker" and len(node.args) > 1:
                yield from _strings(node.args[1])
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "CONDITIONS" for t in node.targets
        ):
            yield from _strings(node.value)


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_every_emitted_technical_kind_is_a_member():
    found: dict[str, list[str]] = {}
    for path in _sources():
        for kind in _emitted(ast.parse(path.read_text(encoding="utf-8"))):
            found.setdefault(kind, []).append(str(path.relative_to(ROOT)))
    strays = {kind: where for kind, where in found.items() if kind not in TECHNICAL_KINDS}
    assert not strays, f"technical kinds missing from TechnicalKind: {strays}"
    # The scan must see the drivers' string literals, or it proves nothing.
    assert {"bad_frame", "connected", "sensor_off", "session_lost", "wrong_mode"} <= set(found)


def test_the_scan_catches_a_stray_kind():
    tree = ast.parse('TechnicalEvent("d", "smoke_detected")\nself._event("coffee_low", detail="x")')
    assert set(_emitted(tree)) == {"smoke_detected", "coffee_low"}


def test_the_default_rules_target_members():
    raw = tomllib.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    events = {r["event"] for r in raw["rule"] if r["kind"] == "technical"}
    assert events and events <= TECHNICAL_KINDS


@pytest.mark.parametrize("kind", list(TechnicalKind))
def test_a_rule_can_target_every_kind(kind: TechnicalKind):
    ruleset = parse_rules(f'[[rule]]\nid = "t"\nkind = "technical"\nevent = "{kind}"\npriority = "high"\n')
    assert ruleset.rules[0].event is kind
    engine, state = Engine(ruleset), EngineState()
    state, actions = engine.evaluate(state, TechnicalEvent("d", kind), 0.0)
    states = [a.state for a in actions if isinstance(a, AlarmEvent)]
    if kind is TechnicalKind.CONNECTED:
        assert states == []  # a connection ends `disconnected`; it raises nothing itself
    else:
        assert states[0] == "active"  # one-shot kinds clear in the same turn


def test_a_rule_with_an_unknown_kind_is_refused_naming_the_members():
    with pytest.raises(RuleError, match=r"event: must be one of .*store_corrupt"):
        parse_rules('[[rule]]\nid = "t"\nkind = "technical"\nevent = "smoke"\n')


def test_members_serialize_as_their_strings():
    event = TechnicalEvent("gateway", TechnicalKind.STORE_CORRUPT, detail="x")
    line = to_json_line(event)
    assert json.loads(line)["kind"] == "store_corrupt"
    assert from_json_line(line) == event
    assert f"{Priority.HIGH} {AlarmState.AUDIO_PAUSED} {Quality.QUESTIONABLE}" == "high audio_paused questionable"
