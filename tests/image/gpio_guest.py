"""Runs INSIDE the booted test image, as root, never shipped: tests/image/gpio_sim.py copies it
onto the test's copy of /data and boots that copy with `systemd.run=` pointing here.

The image's kernel has no GPIO chip under QEMU, so this loads gpio-sim (built for the test
from Debian's kernel source), creates a chip through configfs with the lines the site config
names, lets the normal boot go on (the gateway then opens the chip as on a box), samples the
lines the gateway drives, acknowledges and pauses over the control socket at times it
chooses, and takes the chip away. Everything goes to /data/gpio-test/samples.csv (monotonic
seconds, read by the host after the VM stops) and one `gpio-test:` line per step to the
console. It must run with the image's own Python and libraries: the standard library and
the gpiod binding in the gateway's venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path("/data/gpio-test")
SIM = Path("/sys/kernel/config/gpio-sim/bedside")
CHIP = "gpiochip0"  # the site config names /dev/gpiochip0: a q35 guest has no other chip
LINES = {"buzzer": 3, "led_red": 4, "led_yellow": 5, "led_cyan": 6, "nurse_call": 7}  # as the site config
SOCKET = "/run/bedside/control.sock"
# Each phase's length: the alarm comes with the gateway's first reading, while its start-up
# still makes the loop lag under TCG (the first pulse stretched to 405 ms once), so the bursts
# are judged after SETTLE_S; then two or three whole bursts (3.5 s, 5 s apart), a few LED
# flashes (2 Hz) paused and acknowledged; the output failure follows a removal within 0.3 s.
SETTLE_S, ACTIVE_S, PAUSED_S, ACKED_S, REMOVED_S = 10.0, 22.0, 4.0, 4.0, 3.0
SOUNDING_TIMEOUT_S = 900.0


def say(text: str) -> None:
    print(f"gpio-test: {text}", flush=True)  # StandardOutput=journal+console


def run(*cmd: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stdout.strip()} {res.stderr.strip()}")
    return res.stdout.strip()


class Sampler(threading.Thread):
    """Polls the simulator's view of each line (sim_gpioN/value is what the consumer drives:
    the gateway owns the lines as outputs, so no second reader can request them)."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        base = Path("/sys/bus/gpio/devices") / CHIP
        self.fds = {name: os.open(base / f"sim_gpio{offset}" / "value", os.O_RDONLY) for name, offset in LINES.items()}
        self.out = out.open("a", buffering=1)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.state: dict[str, str] = {}
        self.error = ""

    def write(self, line: str) -> None:
        with self.lock:
            self.out.write(line + "\n")

    def mark(self, name: str) -> None:
        self.write(f"{time.monotonic():.4f},mark,{name}")

    def run(self) -> None:
        while not self.stopped.is_set():
            now = time.monotonic()
            for name, fd in self.fds.items():
                try:
                    value = os.pread(fd, 8, 0).decode().strip()
                except OSError as exc:  # the chip went away: nothing left to sample
                    self.error = str(exc)
                    self.write(f"{now:.4f},mark,sampler-ended")
                    return
                if self.state.get(name) != value:
                    self.state[name] = value
                    self.write(f"{now:.4f},{name},{value}")
            time.sleep(0.002)

    def wait_for(self, name: str, value: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.state.get(name) == value:
                return True
            time.sleep(0.05)
        return False


def make_chip() -> None:
    started = time.monotonic()
    if not Path("/sys/kernel/config/gpio-sim").exists():
        run("modprobe", "configfs")
        if not os.path.ismount("/sys/kernel/config"):
            run("mount", "-t", "configfs", "none", "/sys/kernel/config")
        run("insmod", str(HERE / "gpio-sim.ko"))
    bank = SIM / "bank0"
    bank.mkdir(parents=True)
    (bank / "num_lines").write_text("8")
    (bank / "label").write_text("bedside-test")
    for name, offset in LINES.items():
        (bank / f"line{offset}").mkdir()
        (bank / f"line{offset}" / "name").write_text(name)
    (SIM / "live").write_text("1")
    chip = (bank / "chip_name").read_text().strip()
    if chip != CHIP:
        raise RuntimeError(f"the simulated chip is {chip}, the site config names {CHIP}")
    run("udevadm", "settle")  # the gateway's group gets the node (image: 60-bedside-gpio.rules)
    st = os.stat(f"/dev/{CHIP}")
    group = run("getent", "group", str(st.st_gid)).split(":")[0]
    mode = st.st_mode & 0o777
    say(f"chip {chip} live in {time.monotonic() - started:.1f} s: /dev/{CHIP} group {group} mode {mode:o}")


def seeded_before_python() -> str:
    """The bench VM's hardware RNG (hil/vm.py) seeded the kernel's CRNG before this, the
    boot's first Python, started: its start-up then reads a seeded /dev/urandom (unseeded,
    the kernel made jitter entropy under it, and TCG now and then crashed in that path)."""
    ticks = os.sysconf("SC_CLK_TCK")
    started_s = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    seeded = re.search(r"\[\s*(\d+\.\d+)\] random: crng init done", run("dmesg"))
    rng = Path("/sys/class/misc/hw_random/rng_current").read_text().strip()
    if seeded is None or float(seeded.group(1)) >= started_s:
        at = "never" if seeded is None else f"at {seeded.group(1)} s"
        raise RuntimeError(f"CRNG seeded {at}, after this Python started ({started_s:.2f} s; hwrng {rng})")
    return f"CRNG seeded at {float(seeded.group(1)):.2f} s by hwrng {rng}, before Python at {started_s:.2f} s"


def owners() -> str:
    """Who holds each line, through libgpiod (the binding the gateway uses)."""
    import gpiod  # the image's venv

    with gpiod.Chip(f"/dev/{CHIP}") as chip:
        infos = [chip.get_line_info(offset) for offset in LINES.values()]
    return " ".join(f"{i.name}={i.consumer}/{i.direction.name.lower()}" for i in infos)


def alarm(action: str) -> None:
    """What `bedside alarm ACTION` sends, from this process: a second Python starting up
    beside the gateway on the two emulated CPUs made its loop lag past 250 ms (the
    loop-lag technical alarm then sounded its own pattern while the others were paused)."""
    from appliance.control import request  # the gateway's own client, in the image's venv

    reply = request(SOCKET, {"cmd": action, "bed": None, "rule": None})
    if not reply.get("ok"):
        raise RuntimeError(f"{action} over {SOCKET}: {reply}")


def main() -> None:
    import appliance.control  # noqa: F401  # imported now, not while the lines are timed

    say(seeded_before_python())
    make_chip()
    # The generator booted into kernel-command-line.target: the normal boot goes on now,
    # so the gateway starts once, with its chip already there (as on a box).
    run("systemctl", "start", "--no-block", "multi-user.target")
    say("normal boot resumed")
    sampler = Sampler(HERE / "samples.csv")
    sampler.start()
    if not sampler.wait_for("nurse_call", "1", SOUNDING_TIMEOUT_S):
        raise RuntimeError("the nurse call never came on")
    sampler.mark("alarm-on")
    say(f"high-priority alarm sounding; lines held by {owners()}")
    time.sleep(SETTLE_S)
    sampler.mark("sounding")
    time.sleep(ACTIVE_S)
    sampler.mark("pause")
    alarm("pause")
    sampler.mark("paused")
    say("audio paused over the control socket")
    time.sleep(PAUSED_S)
    sampler.mark("ack")
    alarm("ack")
    sampler.mark("acked")
    say("acknowledged over the control socket")
    time.sleep(ACKED_S)
    sampler.mark("removed")
    (SIM / "live").write_text("0")
    say("chip removed (live=0)")
    time.sleep(REMOVED_S)
    sampler.stopped.set()
    sampler.join(5)
    sampler.mark("done")
    sampler.out.close()
    os.sync()
    say(f"done (sampler: {sampler.error or 'stopped'})")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # one line on the console, which the host test reads
        say(f"FAILED: {exc}")
        # The rest of the boot story still runs (and the host test still reports it).
        subprocess.run(["systemctl", "start", "--no-block", "multi-user.target"], check=False)
        sys.exit(1)
