"""The bench's answer to QEMU hanging at a guest reset (TCG, OVMF): after the console has
been silent at "reboot: Restarting system" for REBOOT_HANG_S, QEMU is power-cycled, the
console says so, and whoever holds the device pty is told the new one. A stand-in
process plays QEMU (the real one is exercised by the image tests)."""

import threading
import time
from pathlib import Path

import pytest

from hil import vm as vm_module
from hil.vm import Vm

FAKE = (
    "n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}; "
    'echo "char device redirected to /dev/pts/$((100+n)) (label dev1)"; '
    'if [ $n = 1 ]; then echo "reboot: Restarting system"; '
    'else echo "  Booting \\`Bedside Gateway slot A\x27"; fi; sleep 30'
)


def test_a_reset_that_never_comes_back_is_power_cycled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm_module, "REBOOT_HANG_S", 0.5)
    monkeypatch.setattr(vm_module, "REBOOT_POLL_S", 0.1)
    machine = Vm(tmp_path / "disk.img", tmp_path / "vm", allow_reboot=True)
    machine.dir.mkdir()
    machine._cmd = ["sh", "-c", FAKE.format(count=tmp_path / "count")]
    cycled = threading.Event()
    machine.on_power_cycle = cycled.set
    machine._launch()
    assert machine.device_pty == "/dev/pts/101"
    threading.Thread(target=machine._watch_reset, daemon=True).start()
    try:
        machine.wait_for(r"Booting `Bedside Gateway slot A'", 10)
        assert cycled.wait(5) and machine.device_pty == "/dev/pts/102"
        assert "power-cycled" in machine.console
        time.sleep(1)  # not cycled again: the console moved on
        assert (tmp_path / "count").read_text().strip() == "2"
    finally:
        machine.stop()


@pytest.mark.parametrize(
    ("console", "stuck"),
    [
        ("[  1.0] x\n[  191.93] reboot: Restarting system\n", True),
        ('reboot: Restarting system\nBdsDxe: starting Boot0002 "UEFI Misc Device"\n', True),  # firmware, no GRUB
        ("reboot: Restarting system\nBdsDxe: starting Boot0002\n  Booting `Bedside Gateway slot B'\n", False),
        ("reboot: Restarting system\n[    0.000000] Linux version 6.12\n", False),
        ("[    2.5] systemd[1]: Started bedside.service\n", False),  # no reset at all
        ("reboot: Restarting system\n  Booting `A'\n[  9.1] reboot: Restarting system\nBdsDxe: x\n", True),
    ],
)
def test_a_boot_stuck_between_the_reset_and_the_boot_loader_is_told_apart(console: str, stuck: bool) -> None:
    assert vm_module._stuck_after_reset(console) is stuck


def test_a_quiet_console_after_a_healthy_reboot_is_not_taken_for_a_hang() -> None:
    # "quiet" kernel, no GRUB line captured: systemd's status lines still show the boot.
    console = "reboot: Restarting system\nBdsDxe: starting Boot0002\n[  OK  ] Started bedside.service\n"
    assert not vm_module._stuck_after_reset(console)
