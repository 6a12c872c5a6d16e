"""Real RAUC drives the Raspberry Pi tryboot backend: `rauc service` on a private bus with
loop-device slots laid out like the Pi image (rootfs + vfat boot per slot, a config FAT
image with autoboot.txt), ota.tryboot as its custom bootloader backend and post-install
handler. The firmware's part (which partition boots, the one-shot flag) is played by the
test from autoboot.txt and `reboot-arg`, as image/README.md describes."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.rauc_bench import RaucSystem, host_bundle_format
from ota.pki import make_signing_pki
from ota.tryboot import Autoboot, TrybootState, cmdline

pytestmark = pytest.mark.integration
COMPATIBLE = "bedside-pi-test"


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


class Pi:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.pki = base / "pki"
        make_signing_pki(self.pki, "pi-test")
        self.config = base / "config.vfat"
        self.proc = base / "proc"
        self.state = base / "tryboot.json"
        self.dev = base / "dev"
        self.loops: list[str] = []

    def fat(self, path: Path, mb: int = 8) -> None:
        sh("truncate", "-s", f"{mb}M", str(path))
        sh("mkfs.vfat", str(path))

    def prepare(self) -> str:
        self.fat(self.config)
        (self.base / "autoboot.txt").write_text(Autoboot("A", "B").render())
        sh("mcopy", "-i", str(self.config), str(self.base / "autoboot.txt"), "::autoboot.txt")
        self.state.write_text(TrybootState(bad=frozenset({"B"})).to_json())
        (self.proc / "device-tree" / "chosen" / "bootloader").mkdir(parents=True)
        self.set_boot("A", tryboot=False)
        self.dev.mkdir()
        for label in ("boot_a", "boot_b"):
            self.fat(self.base / f"{label}.img")
            loop = sh("losetup", "-f", "--show", str(self.base / f"{label}.img")).strip()
            self.loops.append(loop)
            (self.dev / label).symlink_to(loop)  # the handler knows slots by partition label
        tool = f"{sys.executable} -m ota.tryboot --autoboot {self.config} --state {self.state} --proc {self.proc}"
        backend = self.base / "rauc-tryboot"
        backend.write_text(f'#!/bin/sh\nexec {tool} "$@"\n')
        hook = self.base / "rauc-post-install"
        hook.write_text(f"#!/bin/sh\nexec {tool} post-install\n")
        for script in (backend, hook):
            script.chmod(0o755)
        return (
            f"[handlers]\npost-install={hook}\n\n"
            f"[slot.boot.0]\ndevice={self.dev / 'boot_a'}\ntype=vfat\nparent=rootfs.0\n\n"
            f"[slot.boot.1]\ndevice={self.dev / 'boot_b'}\ntype=vfat\nparent=rootfs.1\n"
        )

    def set_boot(self, slot: str, tryboot: bool) -> None:
        (self.proc / "cmdline").write_text(cmdline(slot))
        flag = self.proc / "device-tree" / "chosen" / "bootloader" / "tryboot"
        flag.write_bytes((1 if tryboot else 0).to_bytes(4, "big"))

    def backend(self, *args: str) -> str:
        return sh(str(self.base / "rauc-tryboot"), *args).strip()

    def autoboot(self) -> Autoboot:
        return Autoboot.parse(sh("mtype", "-i", str(self.config), "::autoboot.txt"))

    def bundle(self, version: str) -> Path:
        content = self.base / f"bundle-{version}"
        (content / "root" / "etc").mkdir(parents=True)
        (content / "root" / "etc" / "bedside-release").write_text(version + "\n")
        sh("mkfs.ext4", "-q", "-F", "-d", str(content / "root"), str(content / "rootfs.ext4"), "8M")
        self.fat(content / "boot.vfat", 4)
        (content / "config.txt").write_text("arm_64bit=1\n")
        sh("mcopy", "-i", str(content / "boot.vfat"), str(content / "config.txt"), "::config.txt")
        (content / "manifest.raucm").write_text(
            f"[update]\ncompatible={COMPATIBLE}\nversion={version}\n\n[bundle]\nformat={host_bundle_format()}\n\n"
            "[image.rootfs]\nfilename=rootfs.ext4\n\n[image.boot]\nfilename=boot.vfat\n"
        )
        for name in ("root", "config.txt"):
            sh("rm", "-r", str(content / name))
        out = self.base / f"bedside-{version}.raucb"
        sh("rauc", "bundle", f"--cert={self.pki / 'signing.pem'}", f"--key={self.pki / 'signing.key'}",
           f"--keyring={self.pki / 'ca.pem'}", str(content), str(out))  # fmt: skip
        return out

    def teardown(self) -> None:
        for loop in self.loops:
            subprocess.run(["losetup", "-d", loop], check=False)


@pytest.fixture
def pi(tmp_path: Path) -> Iterator[tuple[Pi, RaucSystem]]:
    box = Pi(tmp_path)
    extra = box.prepare()
    rauc = RaucSystem(tmp_path / "rauc", COMPATIBLE, box.pki / "ca.pem", bootloader=tmp_path / "rauc-tryboot",
                      extra_conf=extra)  # fmt: skip
    try:
        rauc.setup()
        yield box, rauc
    finally:
        rauc.teardown()
        box.teardown()


def rauc_cli(rauc: RaucSystem, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rauc", *args], env=rauc.env(), capture_output=True, text=True, check=False)


def firmware_reboot(box: Pi, rauc: RaucSystem) -> str:
    """What /usr/lib/bedside/reboot and the Pi firmware do together."""
    tryboot = box.backend("reboot-arg") == "0 tryboot"
    table = box.autoboot()
    slot = table.trial if tryboot else table.primary
    box.set_boot(slot, tryboot)
    return rauc.boot(slot)


def test_rauc_installs_into_b_and_the_trial_is_committed_on_mark_good(pi):
    box, rauc = pi
    res = rauc_cli(rauc, "install", str(box.bundle("1.1.0")))
    assert res.returncode == 0, res.stderr
    assert rauc.slot_release("B") == "1.1.0"
    assert box.autoboot() == Autoboot("A", "B")  # nothing committed yet
    assert TrybootState.from_json(box.state.read_text()).pending == "B"
    boot_b = box.base / "boot_b.img"
    assert sh("mtype", "-i", str(boot_b), "::cmdline.txt") == cmdline("B")  # post-install handler
    assert sh("mtype", "-i", str(boot_b), "::config.txt") == "arm_64bit=1\n"
    assert firmware_reboot(box, rauc) == "B"
    res = rauc_cli(rauc, "status", "mark-good")
    assert res.returncode == 0, res.stderr
    assert box.autoboot() == Autoboot("B", "A")
    assert firmware_reboot(box, rauc) == "B"  # plain reboots now stay on B


def test_a_trial_marked_bad_goes_back_to_a(pi):
    box, rauc = pi
    assert rauc_cli(rauc, "install", str(box.bundle("1.1.0"))).returncode == 0
    assert firmware_reboot(box, rauc) == "B"
    res = rauc_cli(rauc, "status", "mark-bad")
    assert res.returncode == 0, res.stderr
    assert firmware_reboot(box, rauc) == "A"
    assert box.autoboot() == Autoboot("A", "B")
    assert box.backend("get-state", "B") == "bad"
