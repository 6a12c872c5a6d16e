"""GRUB's A/B boot counting on the image as built, in QEMU (OVMF, TCG): when every good
slot was tried and none confirmed since — a power cut between GRUB's try and the
gateway's READY, or a site config the gateway refuses so its unit's start limit reboots —
GRUB clears the good slots' tries and boots them again, instead of stopping at "no
bootable slot" for good (a box to reflash). A slot RAUC marked bad stays skipped."""

import subprocess
from pathlib import Path

import pytest

from hil.vm import Vm
from tests.image.conftest import Built
from tests.image.gpio_sim import esp_offset

pytestmark = pytest.mark.integration


def _grubenv(disk: Path, workdir: Path, **values: str) -> dict[str, str]:
    """Set `values` in the disk's grubenv (none: only read it); its variables after."""
    env = workdir / "grubenv"
    subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{esp_offset(disk)}", "::/grubenv", str(env)], check=True)
    if values:
        subprocess.run(["grub-editenv", str(env), "set", *(f"{k}={v}" for k, v in values.items())], check=True)
        subprocess.run(["mcopy", "-o", "-i", f"{disk}@@{esp_offset(disk)}", str(env), "::/grubenv"], check=True)
    listed = subprocess.run(["grub-editenv", str(env), "list"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in listed.splitlines() if "=" in line)


def test_a_box_whose_good_slot_was_tried_and_never_confirmed_boots_it_again(built: Built, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(built.out / "bedside-amd64.img"), str(disk)], check=True)
    # A tried (its power was cut before READY), B never installed: nothing GRUB may try.
    assert _grubenv(disk, tmp_path, A_OK="1", A_TRY="1", B_OK="0", B_TRY="0")["A_TRY"] == "1"
    vm = Vm(disk, tmp_path / "vm", allow_reboot=True)  # GRUB reboots after clearing the tries
    vm.start()
    try:
        said = vm.wait_for(r"no slot confirmed since its last try: trying the good slots again", 120)
        vm.wait_for(r"Booting `Bedside Gateway slot A'", 120, since=said.end())
    finally:
        vm.stop()
    env = _grubenv(disk, tmp_path)
    assert env["A_TRY"] == "1" and env["B_OK"] == "0"  # A tried again; B still not bootable
    assert "Booting `Bedside Gateway slot B'" not in vm.console
