"""A compressed soak (hil/suite/soak.toml, 20 s of high-rate bedside load through the
store and uplink): the gateway's RSS levels off, nothing is lost at the broker, and the
report gives RSS growth per hour and CPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.suite.cli import DEFAULT_SUITE

pytestmark = pytest.mark.integration


def test_a_compressed_soak_holds_and_reports_growth_per_hour(tmp_path: Path) -> None:
    soak = DEFAULT_SUITE.with_name("soak.toml")
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(soak), "--report", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    (scenario,) = json.loads((tmp_path / "summary.json").read_text())["scenarios"]
    held = {e["expect"].split()[0]: e for e in scenario["expectations"]}
    assert held["rss_bounded"]["ok"] and held["no_loss"]["ok"]
    res_ = scenario["resources"]
    assert {"rss_growth_mib_per_h", "cpu_percent", "rss_max_mib"} <= set(res_)
    assert 0 < res_["cpu_percent"] < 100
    assert "MiB/h" in (tmp_path / "report.html").read_text()
