"""The amd64 OS image, built once per run from Debian packages, booted under QEMU (TCG):
the gateway reaches READY under systemd with a simulated oximeter on the box's second
serial port; the first boot grows the data partition to the disk and makes the box's key
on it; the image holds no secrets; the RAUC bundle and the image checksum are signed."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.vm import Vm
from tests.image.conftest import Built

pytestmark = pytest.mark.integration


@pytest.fixture
def image(built: Built) -> Path:
    return built.out


@pytest.fixture
def vm(image: Path, tmp_path: Path) -> Iterator[Vm]:
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image / "bedside-amd64.img"), str(disk)], check=True)
    subprocess.run(["truncate", "-s", "+512M", str(disk)], check=True)  # written to a bigger disk
    machine = Vm(disk, tmp_path / "vm")
    machine.start()
    yield machine
    machine.stop()


def test_gateway_boots_to_ready_with_a_simulated_device_on_its_serial_port(vm):
    sim = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "hil", "simulate", "masimo", "--port", vm.device_pty,
         "--scenario", "desaturation", "--speed", "4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        vm.wait_for(r"Welcome to GRUB", 120)
        vm.wait_for(r"Booting `Bedside Gateway slot A'", 60)
        grown = vm.wait_for(r"data partition grown from (\d+) MiB to (\d+) MiB", 240)
        assert int(grown.group(2)) - int(grown.group(1)) > 400  # the data partition took the extra space
        vm.wait_for(r'Successfully resized "/data"', 120)  # and its ext4 (x-systemd.growfs)
        vm.wait_for(r"created key and CSR for box-\w+ in /data/keys", 240)
        vm.wait_for(r"Started bedside\.service - Bedside Gateway", 240)  # Type=notify: after READY=1
        vm.wait_for(r"spo2-1 connected /dev/ttyS1", 60)
        # Data flows through the real pty into the VM: the desaturation raises the SpO2 alarm.
        vm.wait_for(r"bed-1 (high|medium) active \[spo2", 120)
    finally:
        sim.kill()
        sim.wait()
    assert "Failed to start" not in vm.console
    assert "spo2-1 stale" not in vm.console or "stale (ended)" in vm.console


def test_image_has_no_secrets_and_its_signatures_verify(image, tmp_path):
    listing = subprocess.run(["unsquashfs", "-lc", str(image / "rootfs.sqfs")], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert "/opt/bedside/venv/bin/bedside" in listing
    assert "/etc/systemd/system/bedside.service" in listing
    assert not [line for line in listing.splitlines() if line.endswith((".key", "box.csr"))]
    for tool in ("/usr/bin/gcc", "/usr/bin/cc"):
        assert tool not in listing
    extracted = tmp_path / "etc"
    subprocess.run(["unsquashfs", "-q", "-d", str(extracted), str(image / "rootfs.sqfs"), "etc"], check=True,
                   capture_output=True)  # fmt: skip
    for path in extracted.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    keyring = image / "keyring.pem"
    info = subprocess.run(["rauc", "info", f"--keyring={keyring}", str(image / "bedside-1.0.0.raucb")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert "Bundle Format: \tverity" in info.stdout
    checksum = image / "bedside-amd64.img.sha256"
    check = subprocess.run(["sha256sum", "-c", checksum.name], cwd=image, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout
    verify = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in", f"{checksum}.sig", "-content", str(checksum),
         "-CAfile", str(keyring), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    checksum.write_text(checksum.read_text().replace("0", "1", 1))  # a tampered checksum file fails
    bad = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in", f"{checksum}.sig", "-content", str(checksum),
         "-CAfile", str(keyring), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
