"""RAUC `custom` bootloader backend for the Raspberry Pi firmware's tryboot A/B scheme.

The Pi firmware reads `autoboot.txt` on partition 1 (label `config`):

    [all]
    tryboot_a_b=1
    boot_partition=2      <- the committed slot's FAT boot partition
    [tryboot]
    boot_partition=3      <- used once, after `reboot "0 tryboot"`

so a new slot is tried exactly once: a crash, hang or watchdog reset during the
trial boots the committed slot again (the firmware clears the one-shot flag before
starting). Committing rewrites `[all]`. RAUC asks this backend get/set-primary and
get/set-state; the answers come from `decide`, a pure function of autoboot.txt, a
small state record on the data partition and the facts of the running boot.

Trial bookkeeping in the state record: `pending` (slot to try) and `tries`. The
box's reboot helper asks `reboot-arg`: `0 tryboot` once for a pending slot, then
nothing, so a trial that falls back is not retried; the next good mark of the
committed slot records the tried slot bad (the same rule as GRUB's tried-but-never-
good). Partition numbers and labels are this image's layout (image/build).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from appliance.core.errors import BedsideOtaError

__all__ = ["SLOTS", "Autoboot", "Boot", "Decision", "TrybootError", "TrybootState", "cmdline", "decide", "main"]


class TrybootError(BedsideOtaError):
    """autoboot.txt, the state record or a request that cannot be acted on safely."""


@dataclass(frozen=True, slots=True)
class Slot:
    boot_partition: int
    boot_label: str
    root_label: str


SLOTS: Final[Mapping[str, Slot]] = {
    "A": Slot(2, "boot_a", "rootfs_a"),
    "B": Slot(3, "boot_b", "rootfs_b"),
}
_BY_PARTITION: Final = {slot.boot_partition: name for name, slot in SLOTS.items()}


def _other(slot: str) -> str:
    return "B" if slot == "A" else "A"


def _check(slot: str) -> str:
    if slot not in SLOTS:
        raise TrybootError(f"unknown slot {slot!r} (expected {' or '.join(SLOTS)})")
    return slot


@dataclass(frozen=True, slots=True)
class Autoboot:
    primary: str  # slot behind [all] boot_partition
    trial: str  # slot behind [tryboot] boot_partition

    @classmethod
    def parse(cls, text: str) -> Autoboot:
        section, found = "", {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif line.startswith("boot_partition="):
                value = line.partition("=")[2]
                if not value.isdigit() or int(value) not in _BY_PARTITION:
                    raise TrybootError(f"autoboot.txt: [{section}] boot_partition={value} is not a slot partition")
                found[section] = _BY_PARTITION[int(value)]
        if "all" not in found:
            raise TrybootError("autoboot.txt: no [all] boot_partition")
        return cls(found["all"], found.get("tryboot", _other(found["all"])))

    def render(self) -> str:
        return (
            "# Written by the bedside tryboot backend (RAUC). A/B: [all] is the committed slot,\n"
            '# [tryboot] the slot tried once after `reboot "0 tryboot"`.\n'
            f"[all]\ntryboot_a_b=1\nboot_partition={SLOTS[self.primary].boot_partition}\n"
            f"[tryboot]\nboot_partition={SLOTS[self.trial].boot_partition}\n"
        )


@dataclass(frozen=True, slots=True)
class TrybootState:
    pending: str | None = None
    tries: int = 0
    bad: frozenset[str] = field(default_factory=frozenset)

    def to_json(self) -> str:
        return json.dumps({"pending": self.pending, "tries": self.tries, "bad": sorted(self.bad)})

    @classmethod
    def from_json(cls, text: str) -> TrybootState:
        try:
            raw = json.loads(text)
            return cls(raw["pending"], int(raw["tries"]), frozenset(_check(s) for s in raw["bad"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise TrybootError(f"tryboot state record unreadable: {exc}") from None


@dataclass(frozen=True, slots=True)
class Boot:
    slot: str  # the running slot (rauc.slot= on the kernel command line)
    tryboot: bool  # the firmware started this boot with the tryboot flag


@dataclass(frozen=True, slots=True)
class Decision:
    output: str
    autoboot: Autoboot
    state: TrybootState


def decide(op: str, args: list[str], autoboot: Autoboot, state: TrybootState, boot: Boot) -> Decision:
    """One backend request; pure (the caller persists what changed: state first)."""
    if op == "get-primary":
        trial = state.pending if state.pending and state.tries == 0 else None
        return Decision(trial or autoboot.primary, autoboot, state)
    if op == "get-current":
        return Decision(boot.slot, autoboot, state)
    if op == "reboot-arg":
        if state.pending and state.tries == 0:
            return Decision("0 tryboot", autoboot, replace(state, tries=1))
        return Decision("", autoboot, state)
    if op == "get-state" and len(args) == 1:
        return Decision("bad" if _check(args[0]) in state.bad else "good", autoboot, state)
    if op == "set-primary" and len(args) == 1:
        slot = _check(args[0])
        if slot == autoboot.primary:
            return Decision("", autoboot, TrybootState(None, 0, state.bad - {slot}))
        return Decision("", Autoboot(autoboot.primary, slot), TrybootState(slot, 0, state.bad - {slot}))
    if op == "set-state" and len(args) == 2 and args[1] in ("good", "bad"):
        return _set_state(_check(args[0]), args[1] == "good", autoboot, state, boot)
    raise TrybootError(f"unsupported request: {' '.join([op, *args])}")


def _set_state(slot: str, good: bool, autoboot: Autoboot, state: TrybootState, boot: Boot) -> Decision:
    if not good:
        bad = state.bad | {slot}
        pending = None if state.pending == slot else state.pending
        primary = autoboot.primary
        if primary == slot and _other(slot) not in bad:
            primary = _other(slot)  # never bootable again: the other (known-good) slot takes over
        return Decision("", Autoboot(primary, _other(primary)), TrybootState(pending, state.tries, bad))
    bad = state.bad - {slot}
    if boot.tryboot and boot.slot == slot and autoboot.primary != slot:
        # The trial boot passed its health gate: commit it.
        return Decision("", Autoboot(slot, _other(slot)), TrybootState(None, 0, bad))
    if slot == autoboot.primary and state.pending and state.tries > 0 and not boot.tryboot:
        # Back on the committed slot after the trial was started: it fell back.
        return Decision("", autoboot, TrybootState(None, 0, bad | {state.pending}))
    return Decision("", autoboot, replace(state, bad=bad))


def cmdline(slot: str, consoles: str = "console=tty1 console=ttyS1,115200") -> str:
    """The kernel command line of a slot's boot partition."""
    root = SLOTS[_check(slot)].root_label
    return f"{consoles} root=PARTLABEL={root} rootfstype=squashfs ro rootwait rauc.slot={slot} quiet\n"


# -- I/O edge ----------------------------------------------------------------------


def _mtools_env() -> dict[str, str]:
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def read_fat(device: Path, name: str) -> str:
    res = subprocess.run(["mtype", "-i", str(device), f"::{name}"], capture_output=True, text=True,
                         env=_mtools_env(), check=False)  # fmt: skip
    if res.returncode != 0:
        raise TrybootError(f"cannot read {name} on {device}: {res.stderr.strip()}")
    return res.stdout


def write_fat(device: Path, name: str, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as tmp:
        tmp.write(text)
    try:
        res = subprocess.run(["mcopy", "-o", "-i", str(device), tmp.name, f"::{name}"], capture_output=True,
                             text=True, env=_mtools_env(), check=False)  # fmt: skip
        if res.returncode != 0:
            raise TrybootError(f"cannot write {name} on {device}: {res.stderr.strip()}")
        os.sync()  # FAT has no journal: get it onto the card before anything reboots
    finally:
        os.unlink(tmp.name)


def _save_state(path: Path, state: TrybootState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        out.write(state.to_json())
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _boot_facts(proc: Path) -> Boot:
    args = dict(a.partition("=")[::2] for a in (proc / "cmdline").read_text().split())
    slot = args.get("rauc.slot", "")
    flag = proc / "device-tree" / "chosen" / "bootloader" / "tryboot"
    tried = flag.exists() and int.from_bytes(flag.read_bytes()[:4], "big") == 1
    return Boot(slot, tried)


def _post_install(env: Mapping[str, str], consoles: str) -> list[str]:
    """RAUC post-install handler: give each freshly written boot slot its own command line."""
    labels = {slot.boot_label: name for name, slot in SLOTS.items()}
    done = []
    for n in env.get("RAUC_TARGET_SLOTS", "").split():
        if env.get(f"RAUC_SLOT_CLASS_{n}") != "boot":
            continue
        if not env.get(f"RAUC_SLOT_DEVICE_{n}"):
            raise TrybootError(f"RAUC gave no RAUC_SLOT_DEVICE_{n} for target slot {n}")
        device = Path(env[f"RAUC_SLOT_DEVICE_{n}"])
        slot = labels.get(device.name)
        if slot is None:
            raise TrybootError(f"boot slot device {device} is not one of {', '.join(labels)}")
        write_fat(device, "cmdline.txt", cmdline(slot, consoles))
        done.append(slot)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rauc-tryboot", description=__doc__.splitlines()[0])
    parser.add_argument("--autoboot", type=Path, default=Path("/dev/disk/by-partlabel/config"))
    parser.add_argument("--state", type=Path, default=Path("/data/rauc/tryboot.json"))
    parser.add_argument("--proc", type=Path, default=Path("/proc"))
    parser.add_argument("--consoles", default="console=tty1 console=ttyS1,115200")
    parser.add_argument("op")
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args(argv)
    try:
        if opts.op == "post-install":
            _post_install(os.environ, opts.consoles)
            return 0
        if opts.op == "reboot-arg" and not opts.autoboot.exists():
            return 0  # not a tryboot box (the amd64 image): a plain reboot
        state = TrybootState.from_json(opts.state.read_text()) if opts.state.exists() else TrybootState()
        autoboot = Autoboot.parse(read_fat(opts.autoboot, "autoboot.txt"))
        result = decide(opts.op, opts.args, autoboot, state, _boot_facts(opts.proc))
        if result.state != state:
            _save_state(opts.state, result.state)  # the trial bookkeeping first, then the firmware's file
        if result.autoboot != autoboot:
            write_fat(opts.autoboot, "autoboot.txt", result.autoboot.render())
    except (TrybootError, OSError) as exc:
        print(f"rauc-tryboot: {exc}", file=sys.stderr)
        return 1
    if result.output:
        print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
