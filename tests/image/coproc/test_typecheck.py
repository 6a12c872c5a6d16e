"""The firmware's own mypy run (tools/mypy-firmware.ini) against the MicroPython RP2 stubs:
clean on the tree, and it bites on a misuse of the RP2 `machine` and `time` APIs that
CPython's standard library stubs could not know about."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STUBS = Path(sys.prefix) / "micropython-stubs"  # tools/bootstrap: .venv/micropython-stubs


def mypy(tree: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mypy", "--config-file", "tools/mypy-firmware.ini"]
    cmd += ["--custom-typeshed-dir", str(STUBS), "--cache-dir", str(tree / ".mypy_cache")]
    return subprocess.run(
        cmd, cwd=tree, capture_output=True, text=True, timeout=300, check=False, env={"MYPYPATH": str(STUBS)}
    )


def test_firmware_type_checks_against_the_rp2_stubs_and_the_check_bites(tmp_path):
    assert (STUBS / "machine.pyi").is_file(), f"{STUBS}: RP2 stubs missing (bash tools/bootstrap test)"
    for part in ("image/coproc", "hil/pico", "tools/mypy-firmware.ini"):
        src = ROOT / part
        dst = tmp_path / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy(src, dst)
    clean = mypy(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    main = tmp_path / "image" / "coproc" / "main.py"
    main.write_text(
        main.read_text()
        .replace("uart.any()", "uart.pending()")
        .replace("self._ms = 0", "self._ms = 0\n        self._ms = time.ticks_ms()")
    )
    broken = mypy(tmp_path)
    assert broken.returncode == 1
    assert '"UART" has no attribute "pending"' in broken.stdout
    assert "_TicksMs" in broken.stdout
