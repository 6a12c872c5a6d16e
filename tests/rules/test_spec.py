import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import spec
from rules.spec import RuleError, load_rules, parse_rules

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default_adult.toml"


def test_default_rule_set_is_valid_and_documents_its_sources():
    rs = load_rules(DEFAULT)
    ids = {r.id for r in rs.rules}
    assert {"spo2-low", "pulse-high", "sensor-off", "device-alarm", "uplink-down"} <= ids
    text = DEFAULT.read_text()
    assert "NOT CLINICAL ADVICE" in text
    for tag in ("[EDAN]", "[CONTEC]", "[MINDRAY]"):
        assert text.count(tag) >= 2  # defined once, cited at least once


def test_bed_override_applies_to_that_bed_only():
    rs = parse_rules(
        """
[[rule]]
id = "spo2-low"
kind = "limit"
metric = "M"
below = 90.0
[rule.beds.ICU-2]
below = 85.0
"""
    )
    rule = rs.rules[0]
    assert rule.threshold("ICU-1") == (None, 90.0, None)
    assert rule.threshold("ICU-2") == (None, 85.0, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('kind = "limit"\nmetric = "M"', "rule 'r': above: give exactly one of above or below"),
        ('kind = "limit"\nmetric = "M"\nbelow = "x"', "rule 'r': below: must be a number, not str"),
        ('kind = "limit"\nbelow = 1.0', "rule 'r': metric: missing required key"),
        ('kind = "limit"\nmetric = "M"\nbelow = 90.0\nclear = 80.0', "rule 'r': clear: must not be below"),
        ('kind = "limit"\nmetric = "M"\nbelow = 90.0\nfor_s = -1', "rule 'r': for_s: must be between 0"),
        ('kind = "limit"\nmetric = "M"\nbelow = 9.0\npriority = "urgent"', "rule 'r': priority: must be one of"),
        ('kind = "limit"\nmetric = "M"\nbelow = 9.0\nwindow_s = 5', "rule 'r': window_s: unknown key for a limit"),
        ('kind = "rate"\nmetric = "M"\nwindow_s = 60', "rule 'r': rise_per_min: give rise_per_min"),
        ('kind = "aggregate"\nmetric = "M"\nbelow = 1.0', "rule 'r': window_s: must be above 0"),
        ('kind = "technical"\nevent = "coffee"', "rule 'r': event: must be one of"),
        ('kind = "composite"\nall_of = ["nope"]', "rule 'r': all_of/any_of: unknown rule 'nope'"),
        ('kind = "device"\nflags = { alarm_x = "loud" }', "rule 'r': flags: must map"),
        ('kind = "weird"', "rule 'r': kind: must be one of"),
        ('kind = "limit"\nmetric = "M"\nbelow = 9.0\n[rule.beds.B]\nfor_s = 1', "rule 'r': beds.B.for_s: only"),
    ],
)
def test_errors_name_rule_and_key_in_one_line(body, message):
    with pytest.raises(RuleError) as err:
        parse_rules(f'[[rule]]\nid = "r"\n{body}\n', "r.toml")
    assert str(err.value).startswith("r.toml: " + message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]]\nkind = 'limit'", "r.toml: rule #1: id: missing"),
        ("x = 1", "r.toml: x: unknown key"),
        ("audio_pause_s = 5", "r.toml: audio_pause_s: must be a number between 10 and 600"),
        ("[[rule", "r.toml: not valid TOML"),
        (
            "[[rule]]\nid='a'\nkind='technical'\nevent='stale'\n[[rule]]\nid='a'\nkind='technical'\nevent='stale'",
            "r.toml: rule 'a': id: duplicate",
        ),
    ],
)
def test_file_level_errors(text, message):
    with pytest.raises(RuleError, match="^" + message.replace("[", r"\[")):
        parse_rules(text, "r.toml")


# A template rule per numeric key: valid, with the key set to {v}.
NUMBER_KEYS = {
    "above": 'kind = "limit"\nmetric = "M"\nabove = {v}',
    "below": 'kind = "limit"\nmetric = "M"\nbelow = {v}',
    "clear": 'kind = "limit"\nmetric = "M"\nbelow = 90.0\nclear = {v}',
    "for_s": 'kind = "limit"\nmetric = "M"\nbelow = 90.0\nfor_s = {v}',
    "escalate_after_s": 'kind = "limit"\nmetric = "M"\nbelow = 90.0\nescalate_after_s = {v}',
    "window_s": 'kind = "aggregate"\nmetric = "M"\nbelow = 90.0\nwindow_s = {v}',
    "rise_per_min": 'kind = "rate"\nmetric = "M"\nwindow_s = 60.0\nrise_per_min = {v}',
    "fall_per_min": 'kind = "rate"\nmetric = "M"\nwindow_s = 60.0\nfall_per_min = {v}',
    "within_s": 'kind = "composite"\nall_of = ["o"]\nwithin_s = {v}',
    "beds.B.below": 'kind = "limit"\nmetric = "M"\nbelow = 90.0\n[rule.beds.B]\nbelow = {v}',
    "beds.B.clear": 'kind = "limit"\nmetric = "M"\nbelow = 90.0\n[rule.beds.B]\nclear = {v}',
}
OTHER = '\n[[rule]]\nid = "o"\nkind = "technical"\nevent = "stale"\n'


def test_every_numeric_rule_key_has_a_template():
    assert set(spec._NUMBERS) <= set(NUMBER_KEYS)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(NUMBER_KEYS)), literal=st.sampled_from(["nan", "+nan", "-nan", "inf", "-inf"]))
def test_non_finite_numbers_are_refused_naming_rule_and_key(key, literal):
    # nan passes every comparison (a nan limit never alarms); inf makes a limit unreachable.
    body = NUMBER_KEYS[key]
    assert parse_rules(f'[[rule]]\nid = "r"\n{body.format(v="95.0")}\n{OTHER}').rules  # the template is valid
    with pytest.raises(RuleError) as err:
        parse_rules(f'[[rule]]\nid = "r"\n{body.format(v=literal)}\n{OTHER}', "r.toml")
    assert str(err.value).startswith(f"r.toml: rule 'r': {key}: must be a finite number"), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
def test_non_finite_audio_pause_is_refused(literal):
    with pytest.raises(RuleError, match=r"^r.toml: audio_pause_s: must be a number between 10 and 600$"):
        parse_rules(f"audio_pause_s = {literal}", "r.toml")


def test_rules_check_refuses_a_nan_limit_exit_2(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nid = "spo2-low"\nkind = "limit"\nmetric = "M"\nbelow = nan\n')
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "rules", "check", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    assert res.stderr.decode().splitlines() == [
        f"bedside: {path}: rule 'spo2-low': below: must be a finite number, not nan"
    ]
