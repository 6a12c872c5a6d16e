"""A gateway whose IntelliVue driver does not associate again fails the default suite's
`device-reboot` scenario, and the report names the expectation it broke: the monitor
comes back from its reboot unassociated and ignores polls, so no new data from it
reaches the broker, while everything the driver still does right (the no-data and
session-lost alarms, the other devices' recovery, no loss) holds. The break is a
sitecustomize shim under tests/ (broken_driver/), on the path of this test's
`bedside hil run` and the gateway it starts only."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.suite.cli import DEFAULT_SUITE

pytestmark = pytest.mark.integration

SHIM = Path(__file__).with_name("broken_driver")
SCENARIO = "device-reboot"
RECOVERY = f"{SCENARIO}: recovery device=mp-1 at broker within 6500 ms after step 'boot-mp/end'"


def test_a_driver_that_does_not_associate_again_fails_the_reboot_scenario(tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(SHIM), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "BEDSIDE_BROKEN_DRIVER": "no-reassociate"}
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(DEFAULT_SUITE), "--scenario", SCENARIO,
         "--report", str(tmp_path)],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr
    failed = [line for line in res.stderr.splitlines() if line.startswith("FAIL ")]
    assert failed == [f"FAIL {RECOVERY}: no new observation at broker after the step"], res.stderr
    data = json.loads((tmp_path / "summary.json").read_text())
    assert not data["ok"] and data["failed"] == [f"{RECOVERY}: no new observation at broker after the step"]
    held = {e["expect"] for e in data["scenarios"][0]["expectations"] if e["ok"]}
    assert any(e.startswith("alarm rule=session-lost") for e in held)  # it noticed the loss, and stopped there
    cases = {c.get("name"): c.find("failure") for c in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    assert cases[RECOVERY.split(": ", 1)[1]] is not None
