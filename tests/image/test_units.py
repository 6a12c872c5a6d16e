"""The image's services stay locked down: `systemd-analyze security --offline` rates each
unit file at or below its bound (the gateway 2.5 "OK", the helper units 5.0), so a change
that loosens a unit fails CI: rated by this host's systemd (fast, no image) and by the
image's own (trixie's systemd 257, in the built root: the one that runs them). That the
hardened units still do their work is proven by the image tests booting them in QEMU
(READY, alarms, first-boot key, OTA reboot)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.image.conftest import Built
from tests.image.gpio_sim import image_chroot

UNITS = Path(__file__).resolve().parents[2] / "image" / "files" / "etc" / "systemd" / "system"
BOUNDS = {
    "bedside.service": 2.5,
    "bedside-console.service": 5.0,
    "bedside-firewall.service": 5.0,
    "bedside-firstboot.service": 5.0,
    "bedside-reboot.service": 5.0,
    "bedside-timesync.service": 5.0,
}
_LEVEL = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")


def exposure(unit: Path | str, chroot: Path | None = None) -> float:
    prefix = ["chroot", str(chroot)] if chroot is not None else []
    res = subprocess.run(
        [*prefix, "systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    match = _LEVEL.search(res.stdout + res.stderr)
    assert match is not None, f"{unit}: no exposure level in:\n{res.stdout}\n{res.stderr}"
    return float(match.group(2))


def test_systemd_analyze_is_installed() -> None:
    assert shutil.which("systemd-analyze"), "tools/bootstrap test installs systemd (systemd-analyze)"


def test_every_service_in_the_image_has_a_bound() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(BOUNDS)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_unit_exposure_is_within_its_bound(name: str) -> None:
    level = exposure(UNITS / name)
    assert level <= BOUNDS[name], f"{name}: exposure {level} above its bound {BOUNDS[name]}"


def test_a_loosened_unit_scores_worse(tmp_path: Path) -> None:
    # The check can fail: the gateway's unit without its sandbox rates far above its bound.
    text = (UNITS / "bedside.service").read_text()
    kept = [line for line in text.splitlines() if not line.startswith(("Protect", "Private", "SystemCall", "Restrict"))]
    loose = tmp_path / "bedside.service"
    loose.write_text("\n".join(kept) + "\n")
    assert exposure(loose) > BOUNDS["bedside.service"] + 2


@pytest.mark.integration
def test_units_are_within_their_bounds_under_the_images_systemd(built: Built, tmp_path: Path) -> None:
    with image_chroot(built.out / "rootfs.sqfs", tmp_path) as root:
        version = subprocess.run(["chroot", str(root), "systemctl", "--version"], capture_output=True, text=True,
                                 check=True).stdout.split("\n")[0]  # fmt: skip
        levels = {name: exposure(f"/etc/systemd/system/{name}", chroot=root) for name in BOUNDS}
    print(f"{version}: {levels}")
    assert {name: level for name, level in levels.items() if level > BOUNDS[name]} == {}, version
