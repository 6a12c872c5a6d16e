import io
import json
import subprocess
import sys

import pytest

from drivers.registry import lookup
from hil.ble_bench import BleBenchConfig, run_ble_bench
from hil.ble_sim import SIMULATORS


@pytest.mark.parametrize("profile", sorted(SIMULATORS))
async def test_every_profile_simulator_is_read_by_the_link(profile):
    out = io.StringIO()
    rc = await run_ble_bench(BleBenchConfig(profile, period_s=0.05, duration_s=0.6), out)
    assert rc == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    readings = [r for r in records if r["type"] == "reading"]
    assert readings, profile
    assert not [r for r in records if r.get("kind") == "bad_frame"]
    # Every label the simulator produces has an MDC term (energy expended aside).
    assert all(lookup(f"ble-{profile}", r["label"]) for r in readings if r["label"] != "ENERGY")


def test_hil_ble_command_prints_json_lines_and_refuses_bad_scenarios():
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "ble", "heart-rate", "--period", "0.1", "--duration", "1.5"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert b'"label":"HR"' in res.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "ble", "heart-rate", "--scenario", "nope"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count(b"\n") == 1 and b"--scenario" in bad.stderr
