import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_non_interactively_and_shows_live_vitals(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "demo", "--duration", "7", "--workdir", str(tmp_path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "Traceback" not in res.stderr.decode()
    final = out.rsplit("Bedside Gateway ", 1)[1]
    for bed in ("ICU-1", "ICU-2", "ICU-3", "ICU-8", "ICU-9"):
        assert bed in final
    assert "%" in final and "/min" in final
    # Mosquitto is installed by the README's set-up: the demo ships to a local broker over mTLS.
    assert "uplink: connected" in final and "store:" in final
    # It says where it kept its records, and they are there.
    assert f"records, alarms and the store are in {tmp_path.resolve()}" in out
    assert (tmp_path / "records.jsonl").stat().st_size > 0


# The demo on a terminal (colours, keys, alarms as a person sees them): tests/hil/test_live_view.py.
