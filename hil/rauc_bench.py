"""A RAUC A/B system on the host, for the OTA tests: two loop-device ext4 slots, a
private D-Bus, `rauc service` under a test system.conf, and a bootloader model.

The bootloader is RAUC's `custom` backend: a small script keeping primary slot,
per-slot good/bad state and a boot-attempt budget in files. `boot()` does what
GRUB's boot counting does on the real image: boot the primary while it has
attempts left (a slot marked good always has), otherwise fall back to the other
slot; then (re)start `rauc service` as that slot. Also builds real signed
bundles with `rauc bundle`: verity bundles by default, as image/build makes them and
as the image's RAUC demands (`bundle-formats=-plain`).

Installing a verity bundle needs the kernel's device mapper (RAUC opens
/dev/mapper/control to set up dm-verity for the bundle's payload). Where the host has
none (some CI VMs' kernels: no device-mapper in /proc/misc), `host_bundle_format()`
says "plain" and the bench's RAUC takes plain bundles only; the image's own RAUC is
exercised with verity bundles under QEMU (tests/image/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Final

__all__ = ["RaucSystem", "build_bundle", "host_bundle_format"]

BOOT_ATTEMPTS: Final = 3

_BOOT_SCRIPT: Final = """#!/bin/sh
# RAUC custom bootloader backend (test model of GRUB's A/B boot counting).
D="{state}"
case "$1" in
  get-primary) cat "$D/primary" ;;
  set-primary) echo "$2" > "$D/primary"; echo {attempts} > "$D/attempts.$2" ;;
  get-state) cat "$D/state.$2" 2>/dev/null || echo bad ;;
  set-state) echo "$3" > "$D/state.$2"
             # good: a full budget; bad: none left, the bootloader will not pick it
             if [ "$3" = good ]; then echo {attempts} > "$D/attempts.$2"; else echo 0 > "$D/attempts.$2"; fi ;;
  get-current) cat "$D/booted" ;;
  *) exit 1 ;;
esac
"""

_BUS_CONF: Final = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"""


def host_bundle_format() -> str:
    """The bundle format RaucSystem can install on this host (see the module docstring)."""
    return "verity" if Path("/dev/mapper/control").exists() else "plain"


def _ext4_rootfs(work: Path, dest: Path, version: str, payload: bytes, size_mb: int) -> None:
    (work / "root" / "etc").mkdir(parents=True)
    (work / "root" / "etc" / "bedside-release").write_text(version + "\n")
    (work / "root" / "usr" / "share" / "bedside").mkdir(parents=True)
    (work / "root" / "usr" / "share" / "bedside" / "payload").write_bytes(payload or os.urandom(64 * 1024))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(work / "root"), str(dest), f"{size_mb}M"],
                   check=True, capture_output=True)  # fmt: skip


def build_bundle(
    out: Path, *, compatible: str, version: str, cert: Path, key: Path, keyring: Path, size_mb: int = 4,
    bundle_format: str = "verity", adaptive: bool = False, payload: bytes = b"", image: Path | None = None,
) -> Path:  # fmt: skip
    """A signed RAUC bundle. Its rootfs is `image` when given, shipped as `rootfs.img`
    (RAUC's raw handler: image/build's squashfs, written to the slot as is), else a
    small ext4 whose /etc/bedside-release is `version` (plus `payload` as
    /usr/share/bedside/payload: content that does not compress away, so a verity
    bundle's squashfs is above RAUC's 4 KiB minimum).
    `adaptive`: RAUC's block-hash-index for adaptive updates (verity only)."""
    work = out.parent / f".{out.name}.d"
    shutil.rmtree(work, ignore_errors=True)
    content = work / "content"
    content.mkdir(parents=True)
    rootfs = content / ("rootfs.img" if image is not None else "rootfs.ext4")
    if image is not None:
        shutil.copyfile(image, rootfs)
    else:
        _ext4_rootfs(work, rootfs, version, payload, size_mb)
    adaptive_line = "adaptive=block-hash-index\n" if adaptive else ""
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat={bundle_format}\n\n"
        f"[image.rootfs]\nfilename={rootfs.name}\n{adaptive_line}"
    )
    out.unlink(missing_ok=True)
    subprocess.run(["rauc", "bundle", f"--cert={cert}", f"--key={key}", f"--keyring={keyring}", str(content), str(out)],
                   check=True, capture_output=True)  # fmt: skip
    shutil.rmtree(work)
    return out


class RaucSystem:
    def __init__(
        self, directory: Path, compatible: str, keyring: Path, slot_mb: int = 8, *,
        bootloader: Path | None = None, extra_conf: str = "", bundle_format: str = "",
    ) -> None:  # fmt: skip
        """`bootloader`: another RAUC custom backend than the boot-counting model (then
        `boot(slot)` names the slot the firmware chose); `extra_conf`: more system.conf;
        `bundle_format`: the one format RAUC accepts (default: host_bundle_format())."""
        self.bundle_format = bundle_format or host_bundle_format()
        self.bootloader = bootloader
        self.extra_conf = extra_conf
        self.dir = directory
        self.compatible = compatible
        self.keyring = keyring
        self.slot_mb = slot_mb
        self.loops: dict[str, str] = {}
        self.socket = directory / "bus.sock"
        self.state = directory / "boot"
        self.bus: subprocess.Popen[bytes] | None = None
        self.service: subprocess.Popen[bytes] | None = None
        self.booted = "A"

    @property
    def address(self) -> str:
        return f"unix:path={self.socket}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(exist_ok=True)
        for name in ("A", "B"):
            image = self.dir / f"slot{name}.img"
            with image.open("wb") as f:
                f.truncate(self.slot_mb * 1024 * 1024)
            subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
            self.loops[name] = subprocess.run(
                ["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True
            ).stdout.strip()
        (self.state / "primary").write_text("A\n")
        (self.state / "state.A").write_text("good\n")
        (self.state / "state.B").write_text("bad\n")
        (self.state / "attempts.A").write_text(f"{BOOT_ATTEMPTS}\n")
        (self.state / "attempts.B").write_text("0\n")
        script = self.bootloader or self.dir / "bootloader.sh"
        if self.bootloader is None:
            script.write_text(_BOOT_SCRIPT.format(state=self.state, attempts=BOOT_ATTEMPTS))
            script.chmod(0o755)
        (self.dir / "system.conf").write_text(
            f"[system]\ncompatible={self.compatible}\nbootloader=custom\ndata-directory={self.dir / 'rauc-data'}\n"
            f"bundle-formats={self.bundle_format}\n\n"
            f"[keyring]\npath={self.keyring}\n\n"
            f"[handlers]\nbootloader-custom-backend={script}\n\n"
            f"[slot.rootfs.0]\ndevice={self.loops['A']}\ntype=ext4\nbootname=A\n\n"
            f"[slot.rootfs.1]\ndevice={self.loops['B']}\ntype=ext4\nbootname=B\n\n{self.extra_conf}"
        )
        (self.dir / "bus.conf").write_text(_BUS_CONF.format(socket=self.socket))
        self.bus = subprocess.Popen(["dbus-daemon", "--config-file", str(self.dir / "bus.conf"), "--nofork"],
                                    stderr=subprocess.DEVNULL)  # fmt: skip
        self._wait(self.socket.exists, "dbus-daemon socket")
        self.boot()

    def _read(self, name: str) -> str:
        return (self.state / name).read_text().strip()

    def choose_slot(self) -> str:
        """The bootloader's decision: primary while it has attempts, else the other slot."""
        primary = self._read("primary")
        other = "B" if primary == "A" else "A"
        attempts = int(self._read(f"attempts.{primary}"))
        if self._read(f"state.{primary}") == "good" or attempts > 0:
            if self._read(f"state.{primary}") != "good":
                (self.state / f"attempts.{primary}").write_text(f"{attempts - 1}\n")
            return primary
        (self.state / "primary").write_text(other + "\n")
        return other

    def boot(self, slot: str | None = None) -> str:
        """Power-cycle: stop the service, let the bootloader choose (or boot `slot`), start
        RAUC as that slot."""
        self.stop_service()
        self.booted = slot or self.choose_slot()
        (self.state / "booted").write_text(self.booted + "\n")
        with (self.dir / "rauc.log").open("ab") as log:  # the child keeps its own descriptor
            self.service = subprocess.Popen(
                ["rauc", "service", f"--conf={self.dir / 'system.conf'}", f"--override-boot-slot={self.booted}"],
                env=self.env(), stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        self._wait(self._service_up, "rauc service on the bus")
        return self.booted

    def _service_up(self) -> bool:
        res = subprocess.run(
            ["rauc", "status", "--output-format=json"], check=False, env=self.env(), capture_output=True
        )
        return res.returncode == 0

    @staticmethod
    def _wait(ok: object, what: str) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if callable(ok) and ok():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not come up")

    def slot_release(self, name: str) -> str:
        """/etc/bedside-release inside a slot, read without mounting (debugfs)."""
        res = subprocess.run(["debugfs", "-R", "cat /etc/bedside-release", self.loops[name]],
                             check=False, capture_output=True, text=True)  # fmt: skip
        return res.stdout.strip()

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.terminate()
            self.service.wait(10)
            self.service = None

    def teardown(self) -> None:
        self.stop_service()
        if self.bus is not None:
            self.bus.terminate()
            self.bus.wait(10)
        for loop in self.loops.values():
            subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
