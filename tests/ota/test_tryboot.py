"""The Raspberry Pi tryboot backend: the decision core through whole update stories, and
the command RAUC runs against a real FAT partition image (mtools) and a state file."""

import shutil
import subprocess
from pathlib import Path

import pytest

from ota.tryboot import Autoboot, Boot, TrybootError, TrybootState, cmdline, decide, main

FACTORY = Autoboot("A", "B")
FRESH = TrybootState(bad=frozenset({"B"}))  # slot B is empty on a new box


class Box:
    """The firmware and RAUC around `decide`: what a real box would do at each step."""

    def __init__(self) -> None:
        self.autoboot, self.state = FACTORY, FRESH
        self.boot = Boot("A", tryboot=False)

    def rauc(self, op: str, *args: str) -> str:
        d = decide(op, list(args), self.autoboot, self.state, self.boot)
        self.autoboot, self.state = d.autoboot, d.state
        return d.output

    def install(self, slot: str) -> None:  # what `rauc install` asks of the bootloader
        self.rauc("set-state", slot, "bad")
        self.rauc("set-primary", slot)

    def reboot(self) -> None:  # bedside-reboot: `systemctl reboot "$(reboot-arg)"`
        tryboot = self.rauc("reboot-arg") == "0 tryboot"
        self.boot = Boot(self.autoboot.trial if tryboot else self.autoboot.primary, tryboot)

    def reset(self) -> None:  # power cut, hang, watchdog: the one-shot flag is gone
        self.boot = Boot(self.autoboot.primary, tryboot=False)


def test_update_is_tried_once_then_committed():
    box = Box()
    box.install("B")
    assert box.rauc("get-primary") == "B"  # RAUC's view: B boots next (as a trial)
    assert box.autoboot == FACTORY  # the committed slot is still A
    box.reboot()
    assert box.boot == Boot("B", tryboot=True)
    box.rauc("set-state", "B", "good")  # health gate passed: mark-good
    assert box.autoboot == Autoboot("B", "A")
    assert box.state == TrybootState()
    box.reboot()
    assert box.boot == Boot("B", tryboot=False)  # committed: B is the normal boot now


def test_unhealthy_trial_marked_bad_boots_the_old_slot():
    box = Box()
    box.install("B")
    box.reboot()
    box.rauc("set-state", "B", "bad")
    box.reboot()
    assert box.boot == Boot("A", tryboot=False)
    assert box.rauc("get-state", "B") == "bad"
    assert box.rauc("get-primary") == "A"


def test_a_trial_that_hangs_falls_back_and_is_not_retried():
    box = Box()
    box.install("B")
    box.reboot()
    box.reset()  # B hung: the watchdog resets the board
    assert box.boot.slot == "A"
    box.rauc("set-state", "A", "good")  # the old slot's gateway confirms itself
    assert box.rauc("get-state", "B") == "bad"
    box.reboot()
    assert box.boot == Boot("A", tryboot=False)


def test_power_cut_before_the_reboot_keeps_the_trial():
    box = Box()
    box.install("B")
    box.reset()  # power lost while the update waited for a safe moment
    box.rauc("set-state", "A", "good")  # the restarted gateway confirms A: the trial stays
    box.reboot()
    assert box.boot == Boot("B", tryboot=True)


def test_marking_the_committed_slot_bad_switches_only_to_a_good_slot():
    box = Box()
    box.rauc("set-state", "A", "bad")
    assert box.autoboot.primary == "A"  # B is empty: never switch to it
    box.install("B")
    box.reboot()
    box.rauc("set-state", "B", "good")
    assert box.autoboot.primary == "B"
    box.rauc("set-state", "B", "bad")
    assert box.autoboot.primary == "B"  # A is marked bad too: keep booting something
    box.rauc("set-state", "A", "good")
    box.rauc("set-state", "B", "bad")
    assert box.autoboot == Autoboot("A", "B")


def test_autoboot_round_trip_and_refusals():
    assert Autoboot.parse(Autoboot("B", "A").render()) == Autoboot("B", "A")
    assert Autoboot.parse("[all]\ntryboot_a_b=1\nboot_partition=3\n") == Autoboot("B", "A")
    with pytest.raises(TrybootError, match="boot_partition=7"):
        Autoboot.parse("[all]\nboot_partition=7\n")
    with pytest.raises(TrybootError, match=r"no \[all\]"):
        Autoboot.parse("[tryboot]\nboot_partition=3\n")
    with pytest.raises(TrybootError, match="unknown slot"):
        decide("set-primary", ["C"], FACTORY, FRESH, Boot("A", False))
    with pytest.raises(TrybootError, match="unsupported"):
        decide("set-state", ["A", "maybe"], FACTORY, FRESH, Boot("A", False))
    assert "root=PARTLABEL=rootfs_b" in cmdline("B") and "rauc.slot=B" in cmdline("B")


# -- the command, on a FAT image --------------------------------------------------------


@pytest.fixture
def pi(tmp_path: Path) -> dict[str, Path]:
    if not shutil.which("mcopy") or not shutil.which("mkfs.vfat"):
        pytest.fail("mtools and dosfstools are installed by tools/bootstrap")
    config = tmp_path / "config.vfat"
    subprocess.run(["truncate", "-s", "8M", str(config)], check=True)
    subprocess.run(["mkfs.vfat", "-n", "CONFIG", str(config)], check=True, capture_output=True)
    (tmp_path / "autoboot.txt").write_text(FACTORY.render())
    subprocess.run(["mcopy", "-i", str(config), str(tmp_path / "autoboot.txt"), "::autoboot.txt"], check=True)
    proc = tmp_path / "proc"
    (proc / "device-tree" / "chosen" / "bootloader").mkdir(parents=True)
    (proc / "cmdline").write_text(cmdline("A"))
    state = tmp_path / "data" / "rauc" / "tryboot.json"
    state.parent.mkdir(parents=True)
    state.write_text(FRESH.to_json())
    return {"config": config, "proc": proc, "state": state}


def run(pi: dict[str, Path], *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["--autoboot", str(pi["config"]), "--state", str(pi["state"]), "--proc", str(pi["proc"]), *args])
    out, err = capsys.readouterr()
    return rc, out.strip(), err.strip()


def autoboot_on(config: Path) -> str:
    return subprocess.run(["mtype", "-i", str(config), "::autoboot.txt"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_the_command_drives_a_trial_and_commit_on_the_fat_partition(pi, capsys):
    assert run(pi, "get-primary", capsys=capsys) == (0, "A", "")
    assert run(pi, "set-state", "B", "bad", capsys=capsys)[0] == 0
    assert run(pi, "set-primary", "B", capsys=capsys)[0] == 0
    assert "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3" in autoboot_on(pi["config"])
    assert run(pi, "reboot-arg", capsys=capsys) == (0, "0 tryboot", "")
    assert run(pi, "reboot-arg", capsys=capsys) == (0, "", "")  # once only
    # The firmware boots partition 3 with the tryboot flag set.
    (pi["proc"] / "cmdline").write_text(cmdline("B"))
    (pi["proc"] / "device-tree" / "chosen" / "bootloader" / "tryboot").write_bytes((1).to_bytes(4, "big"))
    assert run(pi, "get-current", capsys=capsys) == (0, "B", "")
    assert run(pi, "set-state", "B", "good", capsys=capsys)[0] == 0
    assert "[all]\ntryboot_a_b=1\nboot_partition=3\n" in autoboot_on(pi["config"])
    assert TrybootState.from_json(pi["state"].read_text()) == TrybootState()


def test_the_command_refuses_with_one_line(pi, capsys):
    rc, _, err = run(pi, "set-primary", "C", capsys=capsys)
    assert rc == 1 and err == "rauc-tryboot: unknown slot 'C' (expected A or B)"
    pi["state"].write_text("{not json")
    rc, _, err = run(pi, "get-primary", capsys=capsys)
    assert rc == 1 and err.startswith("rauc-tryboot: tryboot state record unreadable") and "\n" not in err


def test_reboot_arg_on_a_box_without_tryboot_is_a_plain_reboot(tmp_path, capsys):
    assert main(["--autoboot", str(tmp_path / "none"), "reboot-arg"]) == 0
    assert capsys.readouterr().out == ""


def test_post_install_gives_the_written_boot_slot_its_command_line(pi, tmp_path, monkeypatch, capsys):
    boot_b = tmp_path / "boot_b"
    subprocess.run(["truncate", "-s", "8M", str(boot_b)], check=True)
    subprocess.run(["mkfs.vfat", str(boot_b)], check=True, capture_output=True)
    monkeypatch.setenv("RAUC_TARGET_SLOTS", "3 4")
    monkeypatch.setenv("RAUC_SLOT_CLASS_3", "rootfs")
    monkeypatch.setenv("RAUC_SLOT_DEVICE_3", "/dev/disk/by-partlabel/rootfs_b")
    monkeypatch.setenv("RAUC_SLOT_CLASS_4", "boot")
    monkeypatch.setenv("RAUC_SLOT_DEVICE_4", str(boot_b))
    assert run(pi, "post-install", capsys=capsys)[0] == 0
    written = subprocess.run(["mtype", "-i", str(boot_b), "::cmdline.txt"], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert written == cmdline("B")
