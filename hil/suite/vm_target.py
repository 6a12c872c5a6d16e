"""`--target vm`: the image built by image/build, booted under QEMU (hil/vm.py), as shipped.

Provisioning writes what a site would onto the data partition before the first boot:
`/data/config/gateway.toml` (the image's unit prefers it) with the suite's one serial
device on the box's /dev/ttyS1 and an uplink to the bench broker, and the box's
certificate (CN=gw-1 from the bench PKI, key 0600, owned by the gateway's user). The VM
has user-mode networking restricted to one guestfwd address, piped to the host broker
(hil/tcp_pipe.py). The bench's device writes to the QEMU pty behind ttyS1.

A power cut (`power_cut`) kills QEMU with SIGKILL and, after `down_s`, boots the same
disk again; the step's end (`NAME/end`) is when the console says the gateway's unit
started. The bench's device stays wired through `hil/suite/vm_cable.py` (a relay
that outlives QEMU's pty). The site config has no `[ota]`: the gateway confirms the
running slot at each healthy start all the same (ota/service.py `confirm_running_slot`;
before it did, a box without `[ota]` came back from a power cut to GRUB's "no bootable
slot" — found by this scenario).

What the VM target cannot do from outside, and so refuses in the suite: more than one
device (the box has one bench serial port), cable pulls (QEMU holds the pty), a kill -9
or the control socket (no shell into the box), the box's local outputs and sink
(`where = "local"`, `no_loss`), RSS sampling, and the box faults that need a shell
(a partition, a full /data, the box's clock). A device reboot of the oximeter it does
play: the bench owns the device end of the cable (hil/suite/devices.py).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from hil.broker import Broker
from hil.suite.devices import PROTOCOL
from hil.suite.spec import Scenario, Suite, SuiteError
from hil.suite.target import Sample
from hil.suite.vm_cable import Cable
from hil.vm import Vm

__all__ = ["VM_BROKER_IP", "VmTarget", "check_vm_suite", "provision"]

VM_BROKER_IP: Final = "10.0.2.100"
VM_BROKER_PORT: Final = 8883
_REFUSED_STEPS: Final = (
    "cable_pull",
    "kill_gateway",
    "ack",
    "pause",
    "snapshot",
    "partition",
    "disk_full",
    "box_clock_step",
)
_REFUSED_EXPECTS: Final = ("no_loss", "active", "inactive", "rss_bounded", "backlog")
BOOT_TIMEOUT_S: Final = 900.0


def check_vm_suite(suite: Suite) -> None:
    """SuiteError for what the VM target cannot play (see the module's docstring)."""
    first = suite.scenarios[0].devices
    for sc in suite.scenarios:
        where = f"scenario {sc.name!r}"
        if len(sc.devices) != 1 or sc.devices != first:
            raise SuiteError(f"{where}: --target vm has one bench serial port: the same one device in every scenario")
        if sc.devices[0].family not in PROTOCOL:
            raise SuiteError(f"{where}: --target vm wires a serial oximeter ({', '.join(PROTOCOL)}) to the box's ttyS1")
        for step in sc.steps:
            if step.action in _REFUSED_STEPS:
                raise SuiteError(f"{where}: --target vm cannot play {step.action}")
        for exp in sc.expects:
            if exp.kind in _REFUSED_EXPECTS or exp.where == "local":
                raise SuiteError(f"{where}: --target vm cannot observe {exp.kind} at {exp.where}")
        if sc.rules_path:
            raise SuiteError(f"{where}: --target vm runs the image's own rules (no rules_path)")


def vm_config(scenario: Scenario) -> str:
    """The site config: the scenario's device on ttyS1, the uplink to the bench broker."""
    (dev,) = scenario.devices
    return f"""[gateway]
bed_id = "{dev.bed}"
registry_path = "/data/bedside/registry.json"
log_level = "info"
[queue]
path = "/data/bedside/store.db"
key_path = "/data/bedside/store.key"
commit_interval_ms = 20
[alarms]
control_socket = "/run/bedside/control.sock"
[uplink]
host = "{VM_BROKER_IP}"
port = {VM_BROKER_PORT}
server_hostname = "{VM_BROKER_IP}"
gateway_id = "gw-1"
ca_path = "/data/keys/ca.pem"
cert_path = "/data/keys/gw-1.pem"
key_path = "/data/keys/gw-1.key"
connect_timeout_s = 5.0
backoff_min_s = 0.2
backoff_max_s = 1.0
[[devices]]
id = "{dev.id}"
protocol = "{PROTOCOL[dev.family]}"
port = "/dev/ttyS1"
baud = 9600
stale_after_s = 3.0
reopen_min_s = 0.1
reopen_max_s = 0.5
"""


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def provision(disk: Path, rootfs: Path, broker: Broker, config: str, workdir: Path) -> None:
    """The site's config and the box's uplink certificate onto the data partition (4)."""
    start = int(_run(["sgdisk", "-i", "4", str(disk)]).split("First sector: ")[1].split()[0])
    passwd = _run(["unsquashfs", "-cat", str(rootfs), "etc/passwd"])
    uid, gid = (int(v) for v in next(ln.split(":")[2:4] for ln in passwd.splitlines() if ln.startswith("bedside:")))
    mnt = workdir / "data"
    mnt.mkdir(exist_ok=True)
    loop = _run(["losetup", "-f", "--show", "-o", str(start * 512), str(disk)]).strip()
    subprocess.run(["mount", loop, str(mnt)], check=True)
    try:
        for sub in ("config", "keys"):
            (mnt / sub).mkdir(exist_ok=True)
            shutil.chown(mnt / sub, uid, gid)
        (mnt / "config" / "gateway.toml").write_text(config)
        files = broker.pki.client("gw-1")
        for src, name in ((files.ca, "ca.pem"), (files.cert, "gw-1.pem"), (files.key, "gw-1.key")):
            shutil.copyfile(src, mnt / "keys" / name)
            shutil.chown(mnt / "keys" / name, uid, gid)
        (mnt / "keys" / "gw-1.key").chmod(0o600)
        shutil.chown(mnt / "config" / "gateway.toml", uid, gid)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        subprocess.run(["losetup", "-d", loop], check=True)


class VmTarget:
    """The booted image: started once for the suite; every scenario plays on it."""

    name = "vm"

    def __init__(self, image_dir: Path, workdir: Path, broker: Broker, scenario: Scenario) -> None:
        self.workdir = workdir
        disk = workdir / "disk.img"
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", str(image_dir / "bedside-amd64.img"), str(disk)], check=True)
        subprocess.run(["truncate", "-s", "+512M", str(disk)], check=True)
        rootfs = image_dir / "rootfs.sqfs"
        provision(disk, rootfs, broker, vm_config(scenario), workdir)
        pipe = f"{sys.executable} {Path(__file__).resolve().parents[1] / 'tcp_pipe.py'} 127.0.0.1 {broker.port}"
        self.nic = f"user,restrict=on,guestfwd=tcp:{VM_BROKER_IP}:{VM_BROKER_PORT}-cmd:{pipe}"
        self.disk = disk
        self.vm = Vm(disk, workdir / "vm", nic=self.nic)
        self.cable = Cable(workdir)
        self.starts = 0
        self.power_cuts = 0

    plays = frozenset({"power_cut"})

    @property
    def device_port(self) -> str:
        """The bench end of the cable to the box's /dev/ttyS1 (it survives a power cut)."""
        return str(self.cable.path)

    def boot(self) -> None:
        self.vm.start()
        self.cable.connect(self.vm.device_pty)

    def wait_ready(self) -> None:
        self.vm.wait_for(r"Started bedside\.service - Bedside Gateway", BOOT_TIMEOUT_S)
        self.starts += 1

    async def begin(self, action: str, offset_s: float) -> None:
        """A power cut: QEMU killed outright (the disk as the guest last wrote it)."""
        self.cable.disconnect()
        await asyncio.to_thread(self.vm.stop)
        self.power_cuts += 1

    async def end(self, action: str, offset_s: float) -> None:
        """Power back: the same disk booted again, until the gateway's unit started."""
        self.vm = Vm(self.disk, self.workdir / "vm", nic=self.nic)
        await asyncio.to_thread(self.boot)
        await asyncio.to_thread(self.wait_ready)

    async def start(self) -> None:
        return None  # booted once for the suite (boot/wait_ready)

    def kill(self) -> None:
        raise SuiteError("--target vm cannot kill the gateway")

    async def stop(self) -> int | None:
        return None

    async def control(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def sample(self) -> Sample | None:
        return None

    def shutdown(self) -> None:
        self.vm.stop()
        self.cable.close()
