from pathlib import Path

import pytest

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
