"""The amd64 OS image, built once per run from Debian packages, booted under QEMU (TCG):
the gateway reaches READY under systemd with a simulated oximeter on the box's second
serial port; the first boot grows the data partition to the disk and makes the box's key
on it; its firewall, loaded from the site config, lets the host reach the HL7 listener the
config enables and drops a port it does not; in the same boot its alarm outputs drive a
real kernel GPIO chip (gpio-sim, built for the test: tests/image/gpio_sim.py) with the
IEC 60601-1-8 high-priority signals, the nurse call, audio pause and acknowledge, and a chip
that goes away raises the output-failure alarm; the image holds no secrets; the RAUC bundle
and the image checksum are signed."""

import contextlib
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import serial

from drivers.hl7.mllp import MllpDecoder, frame
from hil.hl7_sim import oru_r01
from hil.masimo_sim import masimo_line
from hil.scenarios import Vitals
from hil.vm import Vm
from rules.patterns import PatternConfig
from tests.image.conftest import Built, data_partition
from tests.image.gpio_sim import GPIO_ALARMS, build_module, check_samples, parse_samples, prepare_disk

HL7_PORT, CLOSED_PORT = 2575, 2600  # in the guest: the listener the site config enables, and one it does not

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


@pytest.fixture(scope="module")
def gpio_module(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_module(built.out / "rootfs.sqfs", tmp_path_factory.mktemp("gpio-sim"))


@pytest.fixture
def vm(built: Built, gpio_module: Path, tmp_path: Path, forwarded: dict[int, int]) -> Iterator[Vm]:
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(built.out / "bedside-amd64.img"), str(disk)], check=True)
    subprocess.run(["truncate", "-s", "+512M", str(disk)], check=True)  # written to a bigger disk
    # The site config: the image's own, plus an HL7 listener (the firewall opens its port)
    # and the alarm lines on the GPIO chip the guest script creates before the normal boot.
    image_config = subprocess.run(["unsquashfs", "-cat", str(built.out / "rootfs.sqfs"), "etc/bedside/gateway.toml"],
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "\n[alarms]\n" in image_config
    site_config = image_config.replace("\n[alarms]\n", "\n[alarms]\n" + GPIO_ALARMS, 1)
    listener = f'\n[[devices]]\nid = "hl7-1"\nprotocol = "hl7"\nport = "tcp://0.0.0.0:{HL7_PORT}"\n'
    with data_partition(disk, built, tmp_path) as data:
        (data.root / "config").mkdir()
        (data.root / "config" / "gateway.toml").write_text(site_config + listener)
        prepare_disk(disk, data.root, gpio_module, tmp_path)
    forwards = ",".join(f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in forwarded.items())
    machine = Vm(disk, tmp_path / "vm", nic=f"user,restrict=on,{forwards}")
    machine.start()
    yield machine
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
    oximeter = Oximeter(vm.device_pty)
    oximeter.start()
    try:
        vm.wait_for(r"Welcome to GRUB", 120)
        vm.wait_for(r"Booting `Bedside Gateway slot A'", 60)
        grown = vm.wait_for(r"data partition grown from (\d+) MiB to (\d+) MiB", 240)
        assert int(grown.group(2)) - int(grown.group(1)) > 400  # the data partition took the extra space
        # The real kernel chip, before the normal boot: the udev rule gave the gateway's group the node.
        chip = _gpio_step(vm, r"chip gpiochip0 live in [\d.]+ s: .*", 300)
        assert chip.endswith("/dev/gpiochip0 group gpio mode 660"), chip
        vm.wait_for(r'Successfully resized "/data"', 120)  # and its ext4 (x-systemd.growfs)
        vm.wait_for(r"created key and CSR for box-\w+ in /data/keys", 240)
        vm.wait_for(r"Finished bedside-firewall\.service", 240)  # oneshot: "Finished"
        vm.wait_for(r"Started bedside\.service - Bedside Gateway", 240)  # Type=notify: after READY=1
        vm.wait_for(r"alarm output gpio self-test: ok", 10)  # libgpiod opened the chip as user bedside
        vm.wait_for(r"spo2-1 connected /dev/ttyS1", 60)
        vm.wait_for(r"DHCPv4 address 10\.0\.2\.15", 120)  # QEMU forwards to the guest's address
        vm.wait_for(rf"hl7-1: HL7 listener on 0\.0\.0\.0:{HL7_PORT}", 60)
        assert b"MSA|CA|FW-1" in _hl7_ack(forwarded[HL7_PORT])  # the enabled listener accepts (enhanced ACK)
        assert _dropped(forwarded[CLOSED_PORT])  # a port the config does not enable: dropped, not refused
        # Data flows through the real pty into the VM: the desaturation raises the SpO2 alarm.
        vm.wait_for(r"bed-1 high active \[spo2-desat\]", 120)
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
        samples_text = (data.root / "gpio-test" / "samples.csv").read_text()
    (tmp_path / "samples.csv").write_text(samples_text)
    problems, figures = check_samples(parse_samples(samples_text), PatternConfig())
    print(f"gpio lines in the VM: {figures}")  # shown with -s
    assert not problems, f"{problems}\nmeasured: {figures}"


def test_image_has_no_secrets_and_its_signatures_verify(image, tmp_path):
    listing = subprocess.run(["unsquashfs", "-lc", str(image / "rootfs.sqfs")], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert "/opt/bedside/venv/bin/bedside" in listing
    assert "/etc/systemd/system/bedside.service" in listing
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
    assert "Bundle Format: \tverity" in info.stdout
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
