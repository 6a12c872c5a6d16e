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
    final = out.rsplit("Bedside Gateway demo", 1)[1]
    for bed in ("ICU-1", "ICU-2", "ICU-3"):
        assert bed in final
    assert "%" in final and "/min" in final
    assert "connected" in final
    assert (tmp_path / "records.jsonl").stat().st_size > 0
