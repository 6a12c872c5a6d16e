"""A deliberately broken uplink makes the default suite fail, and the report names the
expectation it broke: the `duplicate-resends` scenario (broker stall + kill -9) against
a gateway whose uplink never hears a PUBACK (nothing reaches the consumer: `no_loss`
fails on what is missing) and against one that never deletes what the broker
acknowledged (everything is sent again after the restart: `no_loss` fails on the
resend bound). The break is a sitecustomize shim under tests/ (broken_uplink/), on
the path of this test's `bedside hil run` and the gateway it starts only."""

import html
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.suite.cli import DEFAULT_SUITE

pytestmark = pytest.mark.integration

SHIM = Path(__file__).with_name("broken_uplink")
SCENARIO = "duplicate-resends"
NO_LOSS = f"{SCENARIO}: no_loss resends >= 1 resends <= 40"


def _run_broken(how: str, report: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(SHIM), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "BEDSIDE_BROKEN_UPLINK": how}
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(DEFAULT_SUITE), "--scenario", SCENARIO,
         "--report", str(report)],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("drop-acks", r"observations missing at the broker"),
        ("never-forget", r"resent copies at the broker; expected at least 1, at most 40"),
    ],
)
def test_a_broken_uplink_fails_the_suite_naming_no_loss(how: str, why: str, tmp_path: Path) -> None:
    res = _run_broken(how, tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    failed = [line for line in res.stderr.splitlines() if line.startswith(f"FAIL {NO_LOSS}")]
    assert len(failed) == 1 and why in failed[0], res.stderr
    data = json.loads((tmp_path / "summary.json").read_text())
    assert not data["ok"] and any(f.startswith(NO_LOSS) and why in f for f in data["failed"])
    cases = {c.get("name"): c.find("failure") for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    assert cases[NO_LOSS.split(": ", 1)[1]] is not None
    page = (tmp_path / "report.html").read_text()
    assert "FAIL" in page and html.escape(NO_LOSS.split(": ", 1)[1]) in page
    assert html.escape(why.split(";", maxsplit=1)[0]) in page
