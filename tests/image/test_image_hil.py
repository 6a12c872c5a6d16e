"""`bedside hil run --target vm`: the vm suite against the image as shipped (the build
the other image tests share), booted under QEMU with the bench device on its serial
port and its uplink to the bench broker on the host (mutual TLS 1.3). The last
scenario cuts the box's power (QEMU killed) with an alarm stored and not yet delivered,
and boots the same disk again: the stored alarm arrives, alarms come back. Then an update
over the air (a copy of the build's fleet serves release 1.0.1) while the bed keeps
desaturating: the box installs it into slot B, reboots into it and commits, and every
desaturation that began during the update raised its high-priority alarm at the broker."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.suite.cli import VM_SUITE
from tests.image.conftest import Built, own_fleet, verity_bundle

pytestmark = pytest.mark.integration


def test_the_vm_suite_passes_against_the_image_as_shipped(built: Built, quiet_host: None, tmp_path: Path) -> None:
    # quiet_host: the suite judges alarm deadlines in the guest; no build writes beside it.
    repo = own_fleet(built, tmp_path)
    assert not repo.load("targets").signed.targets  # nothing offered before the step
    release = verity_bundle(built, "1.0.1", tmp_path / "bedside-1.0.1.raucb")
    report = tmp_path / "report"
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(VM_SUITE), "--target", "vm",
         "--image", str(built.out), "--report", str(report), "--fleet", str(repo.fleet), "--release", str(release)],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    data = json.loads((report / "summary.json").read_text())
    assert data["ok"] and data["target"] == "vm"
    names = [s["name"] for s in data["scenarios"]]
    assert names == ["desaturation-at-the-broker", "offline-then-stale", "power-cut", "alarms-during-ota"]
    assert data["latency_ms"]["trigger_to_broker"]["n"] == 1  # device byte on ttyS1 -> alarm at the host broker
    # Three boots of the one disk: the suite's, after the power cut, into slot B.
    console = (report / "vm" / "vm" / "console.log").read_text()
    assert console.count("Started bedside.service") == 3
    assert "Booting `Bedside Gateway slot B'" in console and "OTA committed 1.0.1" in console
    cut = {e["expect"]: e for e in data["scenarios"][2]["expectations"]}
    stored = next(e for k, e in cut.items() if k.startswith("alarm rule=spo2-desat"))
    assert stored["ok"] and "after step 'cut/end'" in next(k for k in cut if k.startswith("alarm rule=spo2-desat"))
    ota = {e["expect"].split()[0]: e for e in data["scenarios"][3]["expectations"]}
    assert ota["no_missed_alarm"]["ok"] and ota["recovery"]["ok"]
    print("alarms during OTA:", ota["no_missed_alarm"]["detail"])  # for the closing note (-s)
