"""Test-only parts for proving the image's alarm outputs on a real kernel GPIO chip.

Debian's kernels enable neither gpio-sim nor gpio-mockup, so `build_module` builds gpio-sim
as an out-of-tree module from Debian's linux-source package against the headers of the
exact kernel the image installs (kernel/irq/irq_sim.c linked in: the image's kernel has no
CONFIG_IRQ_SIM), inside the image's own root unpacked as a chroot (trixie's kernel headers
need trixie's gcc and libc). Nothing of it is shipped: `prepare_disk` puts the module and
the guest script (tests/image/gpio_guest.py) on the test's COPY of /data and boots that copy
through the image's GRUB rebuilt with `systemd.run=` on the kernel command line (systemd-run-generator:
it boots into kernel-command-line.target, the script then starts multi-user.target, so the
gateway starts once, with the chip there). `check_samples` judges what the guest sampled.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rules.patterns import PatternConfig

__all__ = ["GPIO_ALARMS", "GpioKit", "Samples", "build_module", "check_samples", "parse_samples", "prepare_disk"]

HERE = Path(__file__).resolve().parent
IMAGE = HERE.parents[1] / "image"
GUEST = Path("gpio-test")  # on /data
# The site config's lines (gpio_guest.LINES): offsets other than the defaults, so the
# gateway is seen to take them from /data/config/gateway.toml.
GPIO_ALARMS = """gpio_chip = "/dev/gpiochip0"
gpio_buzzer = 3
gpio_led_red = 4
gpio_led_yellow = 5
gpio_led_cyan = 6
gpio_nurse_call = 7
"""
CMDLINE = "systemd.run=/data/gpio-test/run.sh systemd.run_success_action=none systemd.run_failure_action=none"


def _run(*cmd: str, cwd: Path | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)}: {res.stdout[-2000:]}{res.stderr[-2000:]}"
    return res.stdout


def image_kernel(rootfs: Path) -> tuple[str, str]:
    """(kernel release, Debian version of its package) of the image's root file system."""
    listing = _run("unsquashfs", "-lc", str(rootfs), "usr/lib/modules")
    release = sorted({m.group(1) for m in re.finditer(r"usr/lib/modules/([^/\s]+)/", listing)})
    assert len(release) == 1, f"expected one kernel in the image, found {release}"
    status = _run("unsquashfs", "-cat", str(rootfs), "var/lib/dpkg/status")
    stanza = next(s for s in status.split("\n\n") if f"Package: linux-image-{release[0]}\n" in s)
    version = re.search(r"^Version: (\S+)$", stanza, re.M)
    assert version is not None
    return release[0], version.group(1)


@dataclass(frozen=True)
class GpioKit:
    module: Path  # gpio-sim.ko for the image's kernel
    efi: Path  # the image's GRUB, its kernel command line running the guest script


@contextlib.contextmanager
def image_chroot(rootfs: Path, workdir: Path) -> Iterator[Path]:
    """The image's root file system unpacked as a chroot with /proc, the basic device
    nodes and the host's DNS: its own apt, compiler and GRUB are the release's (trixie), not this host's."""
    root = workdir / "root"
    _run("unsquashfs", "-q", "-n", "-d", str(root), str(rootfs))
    resolv = root / "etc" / "resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", resolv)
    # Device nodes of its own, not a bind of /dev: a run killed before the unmount must
    # not leave this machine's /dev under a directory pytest later deletes.
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9)):
        node = root / "dev" / name
        node.unlink(missing_ok=True)
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        node.chmod(0o666)
    _run("mount", "-t", "proc", "proc", str(root / "proc"))
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def build_module(rootfs: Path, workdir: Path) -> GpioKit:
    """gpio-sim.ko for the image's kernel and the test's GRUB, both built in the image's own
    root (a trixie kernel's build tools need its libc and gcc); prints each step's time."""
    release, version = image_kernel(rootfs)
    started = time.monotonic()
    with image_chroot(rootfs, workdir) as root:
        unpack_s = time.monotonic() - started
        # The exact kernel the image boots: its headers and the same source (pinned: a point
        # release may have moved the suite on since the image was built).
        series = ".".join(release.split(".")[:2])
        _run("chroot", str(root), "apt-get", "update", "-qq")
        _run("chroot", str(root), "apt-get", "install", "-y", "-qq", "--no-install-recommends", "make",
             f"linux-headers-{release}={version}", f"linux-source-{series}={version}")  # fmt: skip
        apt_s = time.monotonic() - started - unpack_s
        src = root / "tmp" / "src"
        src.mkdir()
        members = ["drivers/gpio/gpio-sim.c", "drivers/gpio/gpiolib.h", "kernel/irq/irq_sim.c"]
        tarball = root / "usr" / "src" / f"linux-source-{series}.tar.xz"
        _run("tar", "-xJf", str(tarball), "-C", str(src), *(f"linux-source-{series}/{m}" for m in members))
        tree = src / f"linux-source-{series}"
        mod = root / "tmp" / "gpio-sim"
        mod.mkdir()
        # A module cannot be named like one of its objects: gpio-sim.ko from gpio-sim-main.o + irq_sim.o.
        shutil.copy(tree / "drivers/gpio/gpio-sim.c", mod / "gpio-sim-main.c")
        shutil.copy(tree / "drivers/gpio/gpiolib.h", mod / "gpiolib.h")
        irq_sim = (tree / "kernel/irq/irq_sim.c").read_text()
        # irq_to_desc() is not exported to modules; generic_handle_irq() runs the same
        # handle_simple_irq() the domain mapped for the interrupt (and is exported).
        patched = irq_sim.replace("handle_simple_irq(irq_to_desc(irqnum));", "generic_handle_irq(irqnum);")
        assert patched != irq_sim, "irq_sim.c changed upstream: revisit the irq_to_desc patch"
        (mod / "irq_sim.c").write_text(patched)
        (mod / "Kbuild").write_text("obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n")
        _run("chroot", str(root), "make", "-s", "-C", f"/usr/src/linux-headers-{release}", "M=/tmp/gpio-sim", "modules")
        build_s = time.monotonic() - started - unpack_s - apt_s
        kit = GpioKit(workdir / "gpio-sim.ko", workdir / "BOOTX64.EFI")
        shutil.copy(mod / "gpio-sim.ko", kit.module)
        _test_grub(root, kit.efi)
    print(f"gpio-sim.ko for {release} ({version}): unpack {unpack_s:.1f} s, apt {apt_s:.1f} s, "
          f"build {build_s:.1f} s, total {time.monotonic() - started:.1f} s")  # fmt: skip
    return kit


def _test_grub(root: Path, efi: Path) -> None:
    """image/grub.cfg with `systemd.run=` added, made by the image's grub-mkstandalone."""
    grub = (IMAGE / "grub.cfg").read_text()
    test_grub = grub.replace(" quiet\n", f" quiet {CMDLINE}\n")
    assert test_grub != grub, "image/grub.cfg's linux line changed: revisit _test_grub"
    (root / "tmp" / "grub.cfg").write_text(test_grub)
    modules = re.search(r'--modules="([^"]+)"', (IMAGE / "arch-amd64.sh").read_text())
    assert modules is not None
    _run("chroot", str(root), "grub-mkstandalone", "-O", "x86_64-efi", "-o", "/tmp/BOOTX64.EFI",
         f"--modules={modules.group(1)}", "boot/grub/grub.cfg=/tmp/grub.cfg")  # fmt: skip
    shutil.copy(root / "tmp" / "BOOTX64.EFI", efi)


def esp_offset(disk: Path) -> int:
    """Where the disk image's ESP (partition 1: GRUB, grubenv) starts, in bytes (mtools' @@)."""
    info = _run("sgdisk", "-i", "1", str(disk))
    return int(info.split("First sector: ")[1].split()[0]) * 512


def prepare_disk(disk: Path, data_root: Path, kit: GpioKit) -> None:
    """The test's copy only: the guest script and module on /data, a GRUB that runs it."""
    guest = data_root / GUEST
    guest.mkdir()
    shutil.copy(kit.module, guest / "gpio-sim.ko")
    shutil.copy(HERE / "gpio_guest.py", guest / "gpio_guest.py")
    (guest / "run.sh").write_text("#!/bin/sh\nexec /opt/bedside/venv/bin/python /data/gpio-test/gpio_guest.py\n")
    (guest / "run.sh").chmod(0o755)
    _run("mcopy", "-o", "-i", f"{disk}@@{esp_offset(disk)}", str(kit.efi), "::/EFI/BOOT/BOOTX64.EFI")


@dataclass
class Samples:
    changes: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # line -> (t, on)
    marks: dict[str, float] = field(default_factory=dict)

    def pulses(self, line: str, start: float, end: float) -> list[tuple[float, float]]:
        """(on, off) intervals of `line` that begin inside [start, end)."""
        out, on_at = [], None
        for t, on in self.changes.get(line, []):
            if on and on_at is None:
                on_at = t
            elif not on and on_at is not None:
                if start <= on_at < end:
                    out.append((on_at, t))
                on_at = None
        return out

    def value_at(self, line: str, t: float) -> bool:
        value = False
        for when, on in self.changes.get(line, []):
            if when > t:
                break
            value = on
        return value


def parse_samples(text: str) -> Samples:
    samples = Samples()
    for row in text.splitlines():
        t, name, value = row.split(",")
        if name == "mark":
            samples.marks[value] = float(t)
        else:
            samples.changes.setdefault(name, []).append((float(t), value == "1"))
    return samples


@dataclass(frozen=True)
class Tolerance:
    """How far sampled times may be from the configured ones under QEMU TCG, where the
    gateway's pattern player and the guest's sampler share two emulated CPUs with everything
    else (measured: pulses and gaps within 13 ms; now and then one edge 80-90 ms late when the
    host is busy). Medians must be inside IEC 60601-1-8's ranges and close to the
    configuration; single edges may stray by `edge_s`, a few (`outliers`) by more."""

    edge_s: float = 0.040  # one pulse, one gap
    median_s: float = 0.020  # the median pulse and spacing
    interval_s: float = 0.300  # burst to burst (a late wake-up shifts the whole burst)
    outliers: float = 0.10  # share of pulse and gap times allowed beyond edge_s
    flash_hz: float = 0.15
    # An operator command (pause, acknowledge) is answered on the control socket as soon as
    # the alarm state took it; the output's own task then moves the lines. On a busy host
    # the guest saw its reply before the nurse call went off (0.07 s after the request).
    command_s: float = 0.250


def _burst_gaps(cfg: PatternConfig) -> list[float]:
    """The off times between the 10 pulses of a high-priority burst: 3 + 2, pause, 3 + 2."""
    s, g, h = cfg.high_spacing_s, cfg.high_group_gap_s, cfg.high_half_gap_s
    return [s, s, g, s, h, s, s, g, s]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def check_samples(samples: Samples, cfg: PatternConfig, tol: Tolerance = Tolerance()) -> tuple[list[str], str]:
    """(problems, measured figures) of the sampled lines against IEC 60601-1-8's high priority
    as configured, the nurse call, audio pause and acknowledge."""
    m, problems, figures = samples.marks, [], []
    for name in ("sounding", "pause", "paused", "ack", "acked", "removed"):
        if name not in m:
            return [f"the guest never marked {name!r}"], ""
    burst_s = sum(_burst_gaps(cfg)) + 10 * cfg.pulse_s
    period_s = burst_s + cfg.high_interval_s
    # Sounding: the whole bursts between the mark and the pause request.
    bursts: list[list[tuple[float, float]]] = []
    for on, off in samples.pulses("buzzer", m["sounding"] - period_s, m["pause"]):  # the one in progress too
        if bursts and on - bursts[-1][-1][1] < cfg.high_half_gap_s + 0.5:
            bursts[-1].append((on, off))
        else:
            bursts.append([(on, off)])
    whole = [b for b in bursts if b[0][0] >= m["sounding"] and b[0][0] + burst_s + 0.2 < m["pause"]]
    if len(whole) < 2:
        problems.append(f"{len(whole)} whole bursts while sounding, expected at least 2 ({len(bursts)} seen)")
    widths, spacings, strays, intervals = [], [], [], []
    for burst in whole:
        if len(burst) != 10:
            problems.append(f"burst at {burst[0][0] - m['sounding']:.2f} s has {len(burst)} pulses, not 10")
            continue
        widths += [off - on for on, off in burst]
        gaps = [burst[i + 1][0] - burst[i][1] for i in range(9)]
        for got, want in zip(gaps, _burst_gaps(cfg), strict=True):
            nearest = min(set(_burst_gaps(cfg)), key=lambda g: abs(g - got))
            if nearest != want:  # the 3 + 2 / 3 + 2 layout itself
                problems.append(f"gap of {got * 1000:.0f} ms where {want * 1000:.0f} ms is configured")
            if abs(got - want) > tol.edge_s:
                strays.append(f"gap {got * 1000:.0f}/{want * 1000:.0f} ms")
            if want == cfg.high_spacing_s:
                spacings.append(got)
        strays += [f"pulse {w * 1000:.0f} ms" for w in widths[-10:] if abs(w - cfg.pulse_s) > tol.edge_s]
    intervals = [b[0][0] - a[-1][1] for a, b in itertools.pairwise(whole)]
    if widths:
        pulse, spacing = _median(widths), _median(spacings)
        if abs(pulse - cfg.pulse_s) > tol.median_s or not 0.075 <= pulse <= 0.200:
            problems.append(f"median pulse {pulse * 1000:.0f} ms (configured {cfg.pulse_s * 1000:.0f}, IEC 75-200)")
        if abs(spacing - cfg.high_spacing_s) > tol.median_s or not 0.050 <= spacing <= 0.125:
            problems.append(f"median spacing {spacing * 1000:.0f} ms (configured {cfg.high_spacing_s * 1000:.0f}, "
                            f"IEC 50-125)")  # fmt: skip
        if len(strays) > tol.outliers * (len(widths) + len(widths) * 9 // 10):
            problems.append(f"too many pulse/gap times off by more than {tol.edge_s * 1000:.0f} ms: {strays}")
    for i in intervals:
        if abs(i - cfg.high_interval_s) > tol.interval_s or not 2.5 <= i <= 15.0:
            problems.append(f"inter-burst interval {i:.2f} s (configured {cfg.high_interval_s}, IEC 2.5-15)")
    figures.append(f"{len(whole)} whole bursts")
    figures.append(_spread("pulse ms", [w * 1000 for w in widths]))
    figures.append(_spread("spacing ms", [g * 1000 for g in spacings]))
    figures.append(_spread("interval s", intervals))
    figures.append(f"beyond {tol.edge_s * 1000:.0f} ms: {', '.join(strays) or 'none'}")
    figures.append(f"burst period {period_s:.2f} s configured")
    # The red LED flashes for a high-priority alarm while it sounds, paused and acknowledged.
    for phase, start, end in (("sounding", m["sounding"], m["pause"]), ("paused", m["paused"], m["ack"]),
                              ("acknowledged", m["acked"], m["removed"])):  # fmt: skip
        flashes = samples.pulses("led_red", start, end)
        if len(flashes) < 4:
            problems.append(f"red LED flashed {len(flashes)} times while {phase}")
            continue
        # Medians: one late wake-up (TCG) must not pass for a slower flash rate.
        periods = [b[0] - a[0] for a, b in itertools.pairwise(flashes)]
        hz = 1 / _median(periods)
        duty = _median([off - on for on, off in flashes]) * hz
        if abs(hz - cfg.high_flash_hz) > tol.flash_hz or not 1.4 <= hz <= 2.8 or not 0.2 <= duty <= 0.6:
            problems.append(f"red LED {hz:.2f} Hz duty {duty:.2f} while {phase} (IEC 1.4-2.8 Hz, 20-60 %)")
        figures.append(f"red LED {phase} {hz:.2f} Hz duty {duty * 100:.0f} % (periods "
                       f"{min(periods) * 1000:.0f}-{max(periods) * 1000:.0f} ms)")  # fmt: skip
        for other in ("led_yellow", "led_cyan"):
            if samples.pulses(other, start, end) or samples.value_at(other, start):
                problems.append(f"{other} on while a high-priority alarm is shown ({phase})")
    # The nurse call follows the audible high-priority alarm: on while it sounds, off once
    # paused, still off once acknowledged.
    if samples.pulses("nurse_call", m["sounding"] + 0.1, m["removed"]) or not samples.value_at(
        "nurse_call", m["pause"]
    ):
        problems.append("the nurse call did not stay on while the alarm sounded")
    paused, acked = m["paused"] + tol.command_s, m["acked"] + tol.command_s
    if samples.value_at("nurse_call", paused) or samples.value_at("nurse_call", acked):
        problems.append("the nurse call stayed on after the audio pause")
    for phase, start, end in (("paused", paused, m["ack"]), ("acknowledged", acked, m["removed"])):
        if samples.pulses("buzzer", start, end) or samples.value_at("buzzer", start):
            problems.append(f"the buzzer sounded while {phase}")
    released = [t for t, on in samples.changes.get("nurse_call", []) if not on and t > m["sounding"]]
    if released:
        figures.append(f"nurse call off {released[0] - m['pause']:.2f} s after the pause request")
    return problems, "; ".join(figures)


def _spread(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    return f"{name} {min(values):.3g}-{max(values):.3g} (mean {sum(values) / len(values):.3g}, n={len(values)})"
