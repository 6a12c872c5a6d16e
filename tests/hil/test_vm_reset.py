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
    'if [ $n = 1 ]; then echo "reboot: Restarting system"; else echo "Booting again"; fi; sleep 30'
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
        machine.wait_for(r"Booting again", 10)
        assert cycled.wait(5) and machine.device_pty == "/dev/pts/102"
        assert "power-cycled" in machine.console
        time.sleep(1)  # not cycled again: the console moved on
        assert (tmp_path / "count").read_text().strip() == "2"
    finally:
        machine.stop()
