"""Every `bedside` subcommand and every option says what it is for (`--help`)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from appliance.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                assert helped.get(name), f"`{path} {name}` has no help text in `{path} --help`"
                out += _walk(child, f"{path} {name}")
    return out


COMMANDS = _walk(build_parser(), "bedside")


def test_the_tree_is_walked() -> None:
    names = {path for path, _ in COMMANDS}
    # A walk that found nothing would pass every check below.
    assert {"bedside run", "bedside top", "bedside console", "bedside alarm list", "bedside devices pair"} <= names
    assert len(names) > 30


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_option_and_argument_has_help(path: str, parser: argparse.ArgumentParser) -> None:
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and not a.help
    ]
    assert not missing, f"`{path}`: no help for {', '.join(missing)}"


def test_choices_are_listed_in_help() -> None:
    """An option with a fixed set of values shows them (argparse does, unless a metavar hides them)."""
    for path, parser in COMMANDS:
        for action in parser._actions:
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                assert action.metavar is None, f"`{path}` {action.dest}: a metavar hides the choices"


def test_help_runs_for_every_command_without_a_traceback() -> None:
    for path in ("bedside", "bedside demo", "bedside top", "bedside alarm list", "bedside hil simulate"):
        res = subprocess.run(
            [sys.executable, "-m", "appliance.cli", *path.split()[1:], "--help"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "usage:" in res.stdout and "Traceback" not in res.stderr


def test_demo_help_names_its_keys() -> None:
    cmd = [sys.executable, "-m", "appliance.cli", "demo", "--help"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    text = " ".join(res.stdout.split())
    assert "a = acknowledge" in text and "p = audio pause" in text and "q = quit" in text
