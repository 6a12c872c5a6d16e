"""`bedside rules replay` against golden files, and `rules check` exit codes."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.replay import ReplayError, replay
from rules.spec import load_rules

GOLDEN = Path(__file__).with_name("golden")


def cli(*args, stdin=b""):
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def test_replay_matches_the_golden_file_and_is_deterministic():
    rules = load_rules(GOLDEN / "rules.toml")
    expected = (GOLDEN / "episode.alarms.jsonl").read_text()
    for _ in range(2):
        out = io.StringIO()
        with (GOLDEN / "episode.jsonl").open() as fh:
            replay(rules, fh, out)
        assert out.getvalue() == expected
    states = [line.split('"state":"')[1].split('"')[0] for line in expected.splitlines()]
    assert states == ["active", "active", "latched", "escalated", "cleared"]


def test_replay_cli_from_stdin():
    res = cli(
        "rules", "replay", "--rules", str(GOLDEN / "rules.toml"), "-", stdin=(GOLDEN / "episode.jsonl").read_bytes()
    )
    assert res.returncode == 0
    assert res.stdout.decode() == (GOLDEN / "episode.alarms.jsonl").read_text()
    assert b"5 alarm events" in res.stderr


def test_bad_line_names_its_number():
    with pytest.raises(ReplayError, match=r"^in\.jsonl:2: not JSON"):
        replay(load_rules(GOLDEN / "rules.toml"), ["", "{nope"], io.StringIO(), "in.jsonl")


def test_rules_check_cli(tmp_path):
    ok = cli("rules", "check", str(GOLDEN.parents[2] / "rules" / "default_adult.toml"))
    assert ok.returncode == 0 and b"25 rules ok" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nid = "x"\nkind = "limit"\nmetric = "M"\nbelow = 90\nfor_s = "soon"\n')
    res = cli("rules", "check", str(bad))
    assert res.returncode == 2
    assert res.stderr.decode().strip() == f"bedside: {bad}: rule 'x': for_s: must be a number, not str"
