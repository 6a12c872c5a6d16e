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
    for bed in ("ICU-1", "ICU-2", "ICU-3", "ICU-8", "ICU-9"):
        assert bed in final
    assert "%" in final and "/min" in final
    assert "connected" in final
    # Mosquitto is installed by the README's set-up: the demo ships to a local broker over mTLS.
    assert "uplink: up" in final and "store:" in final
    assert (tmp_path / "records.jsonl").stat().st_size > 0


def test_demo_on_a_terminal_shows_coloured_alarms_and_acknowledges_from_the_keyboard(tmp_path):
    import os
    import time

    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "demo", "--speed", "2", "--workdir", str(tmp_path)],
        stdin=slave, stdout=slave, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(slave)
    screen = b""

    def wait_for(needle: bytes, timeout_s: float) -> bool:
        nonlocal screen
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                screen += os.read(master, 65536)
            except OSError:
                return False
            if needle in screen:
                return True
        return False

    try:
        # Tachycardia at bed ICU-2 crosses 120 /min, then the 10 s condition delay.
        assert wait_for(b"\x1b[30;43m  MEDIUM ICU-2  active", 60), screen[-2000:]
        screen = b""
        os.write(master, b"a")
        assert wait_for(b"acknowledged", 10), screen[-2000:]
        os.write(master, b"q")
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        assert "Traceback" not in stderr, stderr
