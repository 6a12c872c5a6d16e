"""The OS image under QEMU (TCG: nested KVM here hangs stock kernels), for the image tests.

amd64: UEFI firmware (OVMF) boots the disk image from a virtio disk; the serial console
is read into a buffer the test waits on; the second serial port (the box's /dev/ttyS1)
is a host pty a device simulator from `hil/` writes to. No network unless `nic` says.

arm64: qemu-system-aarch64 -M virt stands in for the Raspberry Pi (QEMU's raspi4b
model is not in Debian's QEMU 7.2): it boots the image's kernel and initramfs directly
with the slot's command line, the root file system from the same disk image.

Both have a hardware RNG (virtio-rng), as the boards do (the Pi's SoC RNG, an x86 box's
RDRAND): the kernel's CRNG is seeded before the gateway starts. Without one, the first
Python of the boot read /dev/urandom unseeded, the kernel made jitter entropy while a
static key was patched under it, and TCG now and then trapped on the patch's int3 ("Oops:
int3" in try_to_generate_entropy): the guest kernel died mid-boot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = ["Vm"]

OVMF_CODE: Final = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS: Final = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
REBOOT_HANG_S: Final = 60.0  # console silent this long after the guest's reset: QEMU hung
REBOOT_POLL_S: Final = 5.0
RESET_LINE: Final = "reboot: Restarting system"
# What the console shows once a boot got past the firmware: GRUB's menu entry, a kernel
# booted directly (-kernel) or without "quiet", journald's forwarded lines, systemd's status.
_BOOT_STARTED: Final = re.compile(r"Booting `|Linux version|\[\s*\d+\.\d+\] |systemd|\[  OK  \]|login:")
_FAILURE: Final = re.compile(
    r"Dependency failed|Failed to|failed with result|Timed out|emergency|Kernel panic|bedside-growdata"
)


def _stuck_after_reset(console: str) -> bool:
    """The guest reset and nothing after it got as far as the boot loader's choice."""
    at = console.rfind(RESET_LINE)
    if at < 0:
        return False
    after = console[at + len(RESET_LINE) :]
    return _BOOT_STARTED.search(after) is None


class Vm:
    def __init__(
        self, disk: Path, workdir: Path, memory_mb: int = 1024, *, nic: str = "none", allow_reboot: bool = False,
        kernel: tuple[Path, Path, str] | None = None, prefix: tuple[str, ...] = (), rtc_base: str = "utc",
    ) -> None:  # fmt: skip
        """`nic`: QEMU -nic value, e.g. user-mode networking with restrict=on and a guestfwd
        to a host loopback port (the only address the VM can reach). `kernel`: (kernel,
        initramfs, command line) boots an arm64 image on -M virt instead of amd64 UEFI.
        `prefix`: what QEMU runs under, e.g. `ip netns exec NS` (hil/timeserver.py).
        `rtc_base`: QEMU -rtc base=, the guest's battery clock ("utc": this machine's)."""
        self.kernel = kernel
        self.prefix = prefix
        self.rtc_base = rtc_base
        self.nic = nic
        self.allow_reboot = allow_reboot
        self.disk = disk
        self.dir = workdir
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.console = ""
        self.arrivals: list[tuple[int, float]] = []  # (console length, wall time it got there)
        self._lock = threading.Lock()
        self.device_pty = ""
        self._cmd: list[str] = []
        self._stopped = False
        self.on_power_cycle: Callable[[], None] | None = None  # after a hung reset was power-cycled

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        common = [
            "-accel", "tcg", "-m", str(self.memory_mb), "-smp", "2", "-nographic",
            *([] if self.allow_reboot else ["-no-reboot"]),
            "-drive", f"file={self.disk},if=virtio,format=raw", "-nic", self.nic, "-rtc", f"base={self.rtc_base}",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip
        if self.kernel is not None:
            kernel, initrd, append = self.kernel
            cmd = [
                "qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a72", *common,
                "-kernel", str(kernel), "-initrd", str(initrd), "-append", append, "-serial", "mon:stdio",
            ]  # fmt: skip
        else:
            vars_fd = self.dir / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, vars_fd)
            cmd = [
                "qemu-system-x86_64", "-machine", "q35", *common,
                "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,file={vars_fd}",
                "-chardev", "pty,id=dev1", "-serial", "mon:stdio", "-serial", "chardev:dev1",
            ]  # fmt: skip
        self._cmd = [*self.prefix, *cmd]
        self._launch()
        if self.allow_reboot and self.kernel is None:
            threading.Thread(target=self._watch_reset, daemon=True).start()

    def _launch(self) -> None:
        since = self.mark()
        self.proc = subprocess.Popen(self._cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if self.kernel is None:
            match = self.wait_for(r"char device redirected to (/dev/pts/\d+) \(label dev1\)", 20, since=since)
            self.device_pty = match.group(1)

    def _watch_reset(self) -> None:
        """QEMU under TCG (q35, OVMF, 2 vCPUs) now and then never comes back from the
        guest's reset: the console stops at "reboot: Restarting system", or after the
        firmware's "BdsDxe: starting Boot0002" with no boot loader line. A real box's
        watchdog would reset it; here the bench power-cycles QEMU (same disk, said on the
        console) and tells `on_power_cycle` the new device pty."""
        while not self._stopped:
            time.sleep(REBOOT_POLL_S)
            with self._lock:
                hung = _stuck_after_reset(self.console) and bool(self.arrivals)
                quiet_s = time.time() - self.arrivals[-1][1] if self.arrivals else 0.0
            if not hung or quiet_s < REBOOT_HANG_S or self._stopped:
                continue
            with self._lock:
                self.console += f"\n[bench] QEMU silent {quiet_s:.0f} s after the guest's reset: power-cycled\n"
                self.arrivals.append((len(self.console), time.time()))
            old, self.proc = self.proc, None
            if old is not None:
                old.kill()
                old.wait(10)
                if old.stdout is not None:
                    old.stdout.close()
            if self._stopped:
                return
            self._launch()
            if self.on_power_cycle is not None:
                self.on_power_cycle()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                raw = os.read(fd, 4096)
            except OSError:
                return
            if not raw:
                return
            text = raw.decode(errors="replace").replace("\r", "")
            with self._lock:
                self.console += text
                self.arrivals.append((len(self.console), time.time()))
            with (self.dir / "console.log").open("a") as log:
                log.write(text)

    def mark(self) -> int:
        """Where the console is now: `wait_for(since=...)` looks only at what comes after."""
        with self._lock:
            return len(self.console)

    def time_at(self, pos: int) -> float:
        """When the console text at `pos` arrived (wall time)."""
        with self._lock:
            return next((t for length, t in self.arrivals if length > pos), time.time())

    def wait_for(self, pattern: str, timeout_s: float, since: int = 0) -> re.Match[str]:
        """The first match of `pattern` at or after console position `since`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                match = regex.search(self.console, since)
            if match:
                return match
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        with self._lock:
            console = self.console
        # What went wrong is usually far above the tail (a failed unit before emergency mode).
        failed = [line for line in console.splitlines() if _FAILURE.search(line)][-15:]
        why = "\n".join(failed) if failed else "(no failed units on the console)"
        raise TimeoutError(f"console never showed {pattern!r}; failures:\n{why}\nlast output:\n{console[-3000:]}")

    def stop(self) -> None:
        self._stopped = True
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None
