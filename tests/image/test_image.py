"""The amd64 OS image, built once per run from Debian packages, booted under QEMU (TCG):
the gateway reaches READY under systemd with a simulated oximeter on the box's second
serial port; the first boot grows the data partition to the disk and makes the box's key
on it; its firewall, loaded from the site config, lets the host reach the HL7 listener the
config enables and drops a port it does not; in the same boot its alarm outputs drive a
real kernel GPIO chip (gpio-sim, built for the test: tests/image/gpio_sim.py) with the
IEC 60601-1-8 high-priority signals, the nurse call, audio pause and acknowledge, and a chip
that goes away raises the output-failure alarm; the image holds no secrets; the RAUC bundle
and the image checksum are signed.

The same boot carries the box's time: its battery clock (QEMU's RTC) is years behind and
/data holds a time floor (timesyncd's clock file) from an earlier life; the clock starts
at the floor, the gateway raises `clock-unsynced`, then systemd-timesyncd, configured
from the site config's [time] table, synchronises to a real NTP server (chronyd) that
only the VM reaches (hil/timeserver.py), and the same gateway process stamps the right
time and clears the alarm."""

import contextlib
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import serial

from drivers.hl7.mllp import MllpDecoder, frame
from hil.hl7_sim import oru_r01
from hil.masimo_sim import masimo_line
from hil.scenarios import Vitals
from hil.timeserver import GUEST_ADDRESS, TimeServer, time_server
from hil.vm import Vm
from rules.patterns import PatternConfig
from tests.image.conftest import Built, data_partition
from tests.image.gpio_sim import GPIO_ALARMS, GpioKit, build_module, check_samples, parse_samples, prepare_disk

HL7_PORT, CLOSED_PORT = 2575, 2600  # in the guest: the listener the site config enables, and one it does not
RTC_BASE = "2020-01-01T00:00:00"  # the box's battery clock: long before the image and its floor

pytestmark = pytest.mark.integration


@pytest.fixture
def image(built: Built) -> Path:
    return built.out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def forwarded() -> dict[int, int]:
    """Guest port -> host loopback port (QEMU user networking, hostfwd)."""
    return {HL7_PORT: _free_port(), CLOSED_PORT: _free_port()}


@dataclass(frozen=True)
class Booted:
    vm: Vm
    ntp: TimeServer
    floor: int  # the time floor seeded on /data (POSIX seconds)
    seeded: float  # this machine's time when it was seeded


def _epoch(built: Built, workdir: Path) -> int:
    """The image's clock epoch: the mtime of /usr/lib/clock-epoch in its root."""
    out = workdir / "epoch"
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(out), str(built.out / "rootfs.sqfs"), "usr/lib/clock-epoch"],
                   check=True, capture_output=True)  # fmt: skip
    return int((out / "usr" / "lib" / "clock-epoch").stat().st_mtime)


@pytest.fixture(scope="module")
def gpio_kit(built: Built, tmp_path_factory: pytest.TempPathFactory) -> GpioKit:
    return build_module(built.out / "rootfs.sqfs", tmp_path_factory.mktemp("gpio-sim"))


@pytest.fixture
def vm(built: Built, gpio_kit: GpioKit, tmp_path: Path, forwarded: dict[int, int]) -> Iterator[Booted]:
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(built.out / "bedside-amd64.img"), str(disk)], check=True)
    subprocess.run(["truncate", "-s", "+512M", str(disk)], check=True)  # written to a bigger disk
    # The site config: the image's own, plus an HL7 listener (the firewall opens its port)
    # and the site's NTP server: QEMU's host address, where hil/timeserver.py's chronyd is;
    # the alarm lines on the GPIO chip the guest script creates before the normal boot.
    image_config = subprocess.run(["unsquashfs", "-cat", str(built.out / "rootfs.sqfs"), "etc/bedside/gateway.toml"],
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "\n[alarms]\n" in image_config
    site_config = image_config.replace("\n[alarms]\n", "\n[alarms]\n" + GPIO_ALARMS, 1)
    listener = f'\n[[devices]]\nid = "hl7-1"\nprotocol = "hl7"\nport = "tcp://0.0.0.0:{HL7_PORT}"\n'
    site_time = f'\n[time]\nntp_servers = ["{GUEST_ADDRESS}"]\n'
    # The floor: after the image's epoch (so it is the floor that shows) and well behind
    # real time (so the switch to it shows): an hour back, or just after a recent epoch.
    seeded = time.time()
    floor = max(_epoch(built, tmp_path) + 60, int(seeded) - 3600)
    assert floor < seeded - 60, "the image's epoch is too recent to tell the floor from real time"
    with data_partition(disk, built, tmp_path) as data:
        (data.root / "config").mkdir()
        (data.root / "config" / "gateway.toml").write_text(site_config + listener + site_time)
        prepare_disk(disk, data.root, gpio_kit)
        clock = data.root / "timesync" / "clock"  # what timesyncd left at its last synchronisation
        clock.touch()
        os.chown(clock, clock.parent.stat().st_uid, clock.parent.stat().st_gid)
        os.utime(clock, (floor, floor))
    forwards = ",".join(f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in forwarded.items())
    with time_server(tmp_path / "ntp", started=False) as ntp:  # started once the gateway runs unsynced
        # restrict=off inside a namespace that holds only chronyd: the guest reaches it and
        # QEMU's forwards, nothing else.
        machine = Vm(disk, tmp_path / "vm", nic=f"user,{forwards}", prefix=tuple(ntp.netns.prefix), rtc_base=RTC_BASE)
        machine.start()
        try:
            yield Booted(machine, ntp, floor, seeded)
        finally:
            machine.stop()


def _hl7_ack(port: int) -> bytes:
    """An ORU^R01 to the box's HL7 listener through QEMU's port forward; the MLLP reply."""
    message = oru_r01("FW-1", datetime.now(UTC), Vitals(spo2=97.0, pulse=72.0, pi=2.0))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(10)
        sock.sendall(frame(message))
        decoder = MllpDecoder()
        while True:
            data = sock.recv(4096)
            assert data, "the listener closed the connection without an ACK"
            for item in decoder.feed(data):
                if isinstance(item, bytes):
                    return item


def _dropped(port: int) -> bool:
    """QEMU accepts on the host side and connects in the guest: a closed port answers with
    a reset (the host sees EOF at once); a dropped SYN leaves the host connection silent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(4)
        try:
            return sock.recv(1) != b""
        except TimeoutError:
            return True


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _unsynced_at_the_floor(booted: Booted) -> None:
    """The clock started at the floor, not the RTC; the running gateway stamps on the
    floor's time line and raises clock-unsynced. Then the NTP server comes up (as a
    hospital's network might, late): the gateway is already running when the time comes.
    Times are compared with this machine's, never with fixed values."""
    vm, floor = booted.vm, booted.floor
    # systemd 257's timesyncd: "System clock time advanced to recorded timestamp: …" (252: "restoring from …").
    restored = vm.wait_for(
        r"(?:advanced to|restoring from) recorded timestamp: \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", 240
    )
    assert datetime.fromisoformat(restored.group(1)).replace(tzinfo=UTC).timestamp() == floor
    active = vm.wait_for(r"bed-1 low active \[clock-unsynced\] .* at (\S+)", 240)
    assert floor <= _stamp(active.group(1)) < floor + 600  # stamped on the floor's time line
    assert time.time() - _stamp(active.group(1)) > booted.seeded - floor - 30  # ... not on real time
    assert "Contacted time server" not in vm.console
    booted.ntp.start()


def _synchronised_in_the_same_process(booted: Booted) -> None:
    """timesyncd synchronises through the box's firewall; the same gateway process reports
    the step and stamps real time from then on, and clock-unsynced clears."""
    vm, floor = booted.vm, booted.floor
    behind = booted.seeded - floor  # how far the floor is behind real time (at the least)
    vm.wait_for(rf"Contacted time server {re.escape(GUEST_ADDRESS)}:123", 180)
    step = vm.wait_for(r"gateway clock_step system clock stepped \+(\d+\.\d+) s", 30)
    assert behind - 30 < float(step.group(1)) < time.time() - floor + 30
    vm.wait_for(r"gateway clock_unsynced \(ended\) clock synchronised", 30)
    cleared = vm.wait_for(r"bed-1 low cleared \[clock-unsynced\] .* at (\S+)", 30)
    # The records' time is real time now: no earlier than the NTP server (none could be
    # synchronised before it served), no later than now. Seconds: the stamp is truncated.
    assert booted.ntp.started_at - 1 <= _stamp(cleared.group(1)) <= time.time()
    # ... in the same process: started once, never restarted.
    assert vm.console.count("Started bedside.service") == 1
    assert "bedside.service: Scheduled restart" not in vm.console


class Oximeter(threading.Thread):
    """The Masimo simulator's lines (hil.masimo_sim) on the box's ttyS1 once a second, SpO2
    held below the default rules' 80 % desaturation limit from the first reading: a
    high-priority alarm that stays active (and audible) until acknowledged, so its bursts
    can be timed. Steady, not falling: a fall would add the low-priority "SpO2 falling
    fast" alarm (rate rule) half a minute later, audible once the others are paused."""

    def __init__(self, port: str) -> None:
        super().__init__(daemon=True)
        self.port = serial.Serial(port, baudrate=9600, timeout=0, write_timeout=0)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            line = masimo_line("radical7", datetime.now(UTC), Vitals(spo2=75.0, pulse=100.0, pi=2.0))
            # Nobody reading yet and the pty full: the device's line is dropped, as on a cable.
            with contextlib.suppress(serial.SerialTimeoutException):
                self.port.write(line)

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)
        self.port.close()


def _gpio_step(vm: Vm, pattern: str, timeout_s: float) -> str:
    """The guest script's next console line matching `pattern`; its failure line at once."""
    match = vm.wait_for(rf"gpio-test: (FAILED: .*|{pattern})", timeout_s)
    assert not match.group(1).startswith("FAILED"), match.group(0)
    return match.group(0)


def test_gateway_boots_to_ready_with_a_simulated_device_on_its_serial_port(vm, forwarded, built, tmp_path):
    booted, vm = vm, vm.vm
    oximeter = Oximeter(vm.device_pty)
    oximeter.start()
    try:
        vm.wait_for(r"Booting `Bedside Gateway slot A'", 120)  # GRUB 2.12 prints no "Welcome to GRUB"
        grown = vm.wait_for(r"data partition grown from (\d+) MiB to (\d+) MiB", 240)
        assert int(grown.group(2)) - int(grown.group(1)) > 400  # the data partition took the extra space
        vm.wait_for(r'Successfully resized "/data"', 120)  # and its ext4 (x-systemd.growfs)
        vm.wait_for(r"created key and CSR for box-\w+ in /data/keys", 240)
        vm.wait_for(r"Finished bedside-firewall\.service", 240)  # oneshot: "Finished"
        vm.wait_for(r"Started bedside\.service - Bedside Gateway", 240)  # Type=notify: after READY=1
        vm.wait_for(r"alarm output gpio self-test: ok", 10)  # libgpiod opened the chip as user bedside
        _unsynced_at_the_floor(booted)
        vm.wait_for(r"spo2-1 connected /dev/ttyS1", 60)
        vm.wait_for(r"DHCPv4 address 10\.0\.2\.15", 120)  # QEMU forwards to the guest's address
        vm.wait_for(rf"hl7-1: HL7 listener on 0\.0\.0\.0:{HL7_PORT}", 60)
        # QEMU's forwards listen in the time server's namespace: connect from there.
        netns = booted.ntp.netns
        assert b"MSA|CA|FW-1" in netns.call(lambda: _hl7_ack(forwarded[HL7_PORT]))  # accepted (enhanced ACK)
        assert netns.call(lambda: _dropped(forwarded[CLOSED_PORT]))  # not enabled: dropped, not refused
        _synchronised_in_the_same_process(booted)
        # Data flows through the real pty into the VM: the desaturation raises the SpO2 alarm.
        vm.wait_for(r"bed-1 high active \[spo2-desat\]", 120)
        _gpio_step(vm, r"CRNG seeded at .*", 1)  # said before the chip was made (hil/vm.py: virtio-rng)
        owners = _gpio_step(vm, r"high-priority alarm sounding; lines held by (.*)", 120)
        for line in ("buzzer", "led_red", "led_yellow", "led_cyan", "nurse_call"):
            assert f"{line}=bedside-alarm/output" in owners  # the gateway's request, seen through libgpiod
        _gpio_step(vm, r"audio paused over the control socket", 120)
        _gpio_step(vm, r"acknowledged over the control socket", 120)
        removed = _gpio_step(vm, r"chip removed \(live=0\)", 120)
        _gpio_step(vm, r"done \(sampler: .*\)", 120)
    finally:
        oximeter.stop()
    console = vm.console
    assert "Failed to start" not in console
    assert "spo2-1 stale" not in console or "stale (ended)" in console
    # The chip gone: the output failure is a high-priority technical alarm on what remains (the console).
    after = console[console.index(removed) :]
    assert "alarm output gpio failed" in after
    assert re.search(r"high active \[output-failure\] An alarm output failed", after), after[-3000:]
    vm.stop()
    (tmp_path / "after").mkdir()
    with data_partition(vm.disk, built, tmp_path / "after") as data:
        # The floor moved on with the synchronised clock, on /data (timesyncd wrote through its bind).
        saved = (data.root / "timesync" / "clock").stat().st_mtime
        samples_text = (data.root / "gpio-test" / "samples.csv").read_text()
    assert booted.seeded < saved <= time.time()
    (tmp_path / "samples.csv").write_text(samples_text)
    problems, figures = check_samples(parse_samples(samples_text), PatternConfig())
    print(f"gpio lines in the VM: {figures}")  # shown with -s
    assert not problems, f"{problems}\nmeasured: {figures}"


def test_image_has_no_secrets_and_its_signatures_verify(image, tmp_path):
    listing = subprocess.run(["unsquashfs", "-lc", str(image / "rootfs.sqfs")], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert "/opt/bedside/venv/bin/bedside" in listing
    assert "/etc/systemd/system/bedside.service" in listing
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer"):
        assert f"/etc/systemd/system/{timer}" in listing  # masked: a read-only root, RAUC updates
    assert not [line for line in listing.splitlines() if line.endswith((".key", "box.csr"))]
    for tool in ("/usr/bin/gcc", "/usr/bin/cc"):
        assert tool not in listing
    extracted = tmp_path / "etc"
    subprocess.run(["unsquashfs", "-q", "-d", str(extracted), str(image / "rootfs.sqfs"), "etc"], check=True,
                   capture_output=True)  # fmt: skip
    for path in extracted.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    keyring = image / "keyring.pem"
    info = subprocess.run(["rauc", "info", f"--keyring={keyring}", str(image / "bedside-1.0.0.raucb")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert re.search(r"^Bundle Format:\s+verity$", info.stdout, re.M)  # RAUC 1.8 and 1.13 align differently
    checksum = image / "bedside-amd64.img.sha256"
    check = subprocess.run(["sha256sum", "-c", checksum.name], cwd=image, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout
    verify = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in", f"{checksum}.sig", "-content", str(checksum),
         "-CAfile", str(keyring), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    tampered = tmp_path / checksum.name  # a tampered checksum file fails (a copy: the build's is shared)
    tampered.write_text(checksum.read_text().replace("0", "1", 1))
    bad = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in", f"{checksum}.sig", "-content", str(tampered),
         "-CAfile", str(keyring), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0
