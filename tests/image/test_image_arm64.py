"""The Raspberry Pi (arm64) image: built through qemu-user-static, laid out for the Pi
firmware's tryboot A/B, its bundle signed, and its root file system booted under
qemu-system-aarch64 (-M virt, TCG) to READY as a smoke test. What only Pi hardware can
verify (the firmware reading autoboot.txt, the tryboot flag) is listed in image/README.md."""

import re
import subprocess
from pathlib import Path

import pytest

from hil.vm import Vm
from ota.tryboot import Autoboot, cmdline
from tests.image.conftest import Built

pytestmark = pytest.mark.integration


def partition(disk: Path, number: int, dest: Path) -> Path:
    info = subprocess.run(["sgdisk", "-i", str(number), str(disk)], capture_output=True, text=True, check=True).stdout
    first = int(info.split("First sector: ")[1].split()[0])
    last = int(info.split("Last sector: ")[1].split()[0])
    subprocess.run(["dd", f"if={disk}", f"of={dest}", "bs=512", f"skip={first}", f"count={last - first + 1}",
                    "status=none"], check=True)  # fmt: skip
    return dest


def fat_files(image: Path) -> dict[str, str]:
    listing = subprocess.run(["mdir", "-b", "-i", str(image), "::/"], capture_output=True, text=True,
                             env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}, check=True).stdout  # fmt: skip
    return {line.rsplit("/", 1)[-1]: line for line in listing.split()}


def fat_text(image: Path, name: str) -> str:
    return subprocess.run(["mtype", "-i", str(image), f"::{name}"], capture_output=True, text=True,
                          env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}, check=True).stdout  # fmt: skip


def test_pi_image_is_laid_out_for_tryboot_and_signed(built_arm64: Built, tmp_path: Path):
    out = built_arm64.out
    disk = out / "bedside-arm64.img"
    table = subprocess.run(["sgdisk", "-p", str(disk)], capture_output=True, text=True, check=True).stdout
    labels = [line.split()[-1] for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert labels == ["config", "boot_a", "boot_b", "rootfs_a", "rootfs_b", "data"]
    config = partition(disk, 1, tmp_path / "config.vfat")
    assert Autoboot.parse(fat_text(config, "autoboot.txt")) == Autoboot("A", "B")
    assert "tryboot_a_b=1" in fat_text(config, "autoboot.txt")
    boot = partition(disk, 2, tmp_path / "boot.vfat")
    files = fat_files(boot)
    for name in ("start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "vmlinuz", "initrd.img", "config.txt"):
        assert name in files, name
    assert "arm_64bit=1" in fat_text(boot, "config.txt")
    assert fat_text(boot, "cmdline.txt") == cmdline("A")
    # The root file system is arm64 and carries the tryboot backend RAUC is configured with.
    python = subprocess.run(["unsquashfs", "-cat", str(out / "rootfs.sqfs"), "usr/bin/python3.13"],
                            capture_output=True, check=True).stdout  # fmt: skip
    assert python[:4] == b"\x7fELF" and int.from_bytes(python[18:20], "little") == 183  # EM_AARCH64
    conf = subprocess.run(["unsquashfs", "-cat", str(out / "rootfs.sqfs"), "etc/rauc/system.conf"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "bootloader-custom-backend=/usr/lib/bedside/rauc-tryboot" in conf
    assert "compatible=bedside-gw-arm64" in conf
    info = subprocess.run(["rauc", "info", f"--keyring={out / 'keyring.pem'}", str(out / "bedside-1.0.0.raucb")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert re.search(r"^Bundle Format:\s+verity$", info.stdout, re.M)  # RAUC 1.8 and 1.13 align differently
    assert "boot.vfat" in info.stdout and "rootfs.img" in info.stdout
    check = subprocess.run(["sha256sum", "-c", "bedside-arm64.img.sha256"], cwd=out, capture_output=True, check=False)
    assert check.returncode == 0


def test_pi_root_file_system_boots_to_ready_under_qemu_aarch64(built_arm64: Built, tmp_path: Path):
    out = built_arm64.out
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(out / "bedside-arm64.img"), str(disk)], check=True)
    subprocess.run(["truncate", "-s", "+512M", str(disk)], check=True)  # a bigger card than the image
    append = cmdline("A", consoles="console=ttyAMA0,115200").replace(" quiet", "")
    append += " systemd.journald.forward_to_console=1 systemd.show_status=1"
    vm = Vm(disk, tmp_path / "vm", memory_mb=1536, kernel=(out / "vmlinuz-arm64", out / "initrd-arm64.img", append))
    vm.start()
    try:
        vm.wait_for(r"Linux version [^\n]*aarch64|Booting Linux on physical CPU", 120)
        vm.wait_for(r"data partition grown from \d+ MiB to \d+ MiB", 600)
        vm.wait_for(r'Successfully resized "/data"', 300)  # its ext4 too (x-systemd.growfs)
        vm.wait_for(r"created key and CSR for box-\w+ in /data/keys", 600)
        vm.wait_for(r"Started bedside\.service - Bedside Gateway", 600)  # Type=notify: after READY=1
    finally:
        vm.stop()
    grown = vm.wait_for(r"data partition grown from (\d+) MiB to (\d+) MiB", 1)
    assert int(grown.group(2)) - int(grown.group(1)) > 400
    assert "Failed to start" not in vm.console
