"""`bedside hil run --target vm`: the vm suite against the image as shipped (the build
the other image tests share), booted under QEMU with the bench device on its serial
port and its uplink to the bench broker on the host (mutual TLS 1.3). The last
scenario cuts the box's power (QEMU killed) with an alarm stored and not yet delivered,
and boots the same disk again: the stored alarm arrives, alarms come back."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.suite.cli import VM_SUITE
from tests.image.conftest import Built

pytestmark = pytest.mark.integration


def test_the_vm_suite_passes_against_the_image_as_shipped(built: Built, tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(VM_SUITE), "--target", "vm",
         "--image", str(built.out), "--report", str(report)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    data = json.loads((report / "summary.json").read_text())
    assert data["ok"] and data["target"] == "vm"
    names = [s["name"] for s in data["scenarios"]]
    assert names == ["desaturation-at-the-broker", "offline-then-stale", "power-cut"]
    assert data["latency_ms"]["trigger_to_broker"]["n"] == 1  # device byte on ttyS1 -> alarm at the host broker
    # Two boots of the one disk: the suite's, and the one after the power cut.
    assert (report / "vm" / "vm" / "console.log").read_text().count("Started bedside.service") == 2
    cut = {e["expect"]: e for e in data["scenarios"][2]["expectations"]}
    stored = next(e for k, e in cut.items() if k.startswith("alarm rule=spo2-desat"))
    assert stored["ok"] and "after step 'cut/end'" in next(k for k in cut if k.startswith("alarm rule=spo2-desat"))
