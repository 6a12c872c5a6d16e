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
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from hil.broker import Broker
from hil.suite.devices import PROTOCOL
from hil.suite.faults import Milestone, check_plays
from hil.suite.spec import Scenario, Suite, SuiteError
from hil.suite.target import Sample, TargetError
from hil.suite.vm_cable import Cable
from hil.suite.vm_ota import OtaBench, image_version
from hil.vm import Vm
from ota.errors import FleetError

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
START_ATTEMPTS: Final = 3
OTA_TIMEOUT_S: Final = 1200.0  # a 185 MB bundle through the bench's relay, RAUC's install under TCG


def check_vm_suite(suite: Suite, fleet: bool = False) -> None:
    """SuiteError for what the VM target cannot play (see the module's docstring); an
    `ota` step only with a fleet (`fleet`: --fleet and --release given)."""
    check_plays(suite, frozenset({"power_cut", *(["ota"] if fleet else [])}), "vm", "needs --fleet and --release")
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


def provision(disk: Path, rootfs: Path, broker: Broker, config: str, workdir: Path, *, ota: OtaBench | None) -> None:
    """The site's config and the box's uplink certificate onto the data partition (4);
    with `ota`, the box's share of the fleet too."""
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
        if ota is not None:
            ota.provision(mnt, uid, gid)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        subprocess.run(["losetup", "-d", loop], check=True)


class VmTarget:
    """The booted image: started once for the suite; every scenario plays on it."""

    name = "vm"

    def __init__(
        self, image_dir: Path, workdir: Path, broker: Broker, scenario: Scenario, ota: OtaBench | None = None
    ) -> None:
        """`ota`: the fleet an `ota` step publishes to (started here, stopped by `shutdown`)."""
        self.workdir = workdir
        disk = workdir / "disk.img"
        workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", str(image_dir / "bedside-amd64.img"), str(disk)], check=True)
        subprocess.run(["truncate", "-s", "+512M", str(disk)], check=True)
        rootfs = image_dir / "rootfs.sqfs"
        self.ota = ota
        config = vm_config(scenario)
        if ota is not None:
            ota.start()
            config += ota.config(image_version(rootfs))
        provision(disk, rootfs, broker, config, workdir, ota=ota)
        pipe = f"{sys.executable} {Path(__file__).resolve().parents[1] / 'tcp_pipe.py'} 127.0.0.1 {broker.port}"
        self.nic = f"user,restrict=on,guestfwd=tcp:{VM_BROKER_IP}:{VM_BROKER_PORT}-cmd:{pipe}"
        if ota is not None:
            self.nic += f",{ota.guestfwd()}"
        self.disk = disk
        self.vm = self._machine()
        self.cable = Cable(workdir)
        self.starts = 0
        self.power_cuts = 0
        self.plays = frozenset({"power_cut", *(["ota"] if ota is not None else [])})
        self._ota_from = 0

    def _machine(self) -> Vm:
        # An OTA reboots the box: QEMU must not exit on it; RAUC's install wants the memory.
        if self.ota is None:
            return Vm(self.disk, self.workdir / "vm", nic=self.nic)
        vm = Vm(self.disk, self.workdir / "vm", memory_mb=1536, nic=self.nic, allow_reboot=True)
        vm.on_power_cycle = self._rewire  # QEMU hung at a reset and was power-cycled: a new pty
        return vm

    def _rewire(self) -> None:
        self.cable.disconnect()
        self.cable.connect(self.vm.device_pty)

    @property
    def device_port(self) -> str:
        """The bench end of the cable to the box's /dev/ttyS1 (it survives a power cut)."""
        return str(self.cable.path)

    def boot(self) -> None:
        self.vm.start()
        self.cable.connect(self.vm.device_pty)

    def wait_ready(self) -> None:
        """Until the gateway's unit started (READY); TargetError with the box's own words
        when it failed to (a site config the gateway refuses: one line naming the key)."""
        since = 0  # a fresh Vm: its console begins with this boot
        for _ in range(START_ATTEMPTS):  # the unit restarts a failed start (Restart=always)
            seen = self.vm.wait_for(r"(Started|Failed to start) bedside\.service", BOOT_TIMEOUT_S, since=since)
            if seen.group(1) == "Started":
                self.starts += 1
                return
            since = seen.end()
        said = re.findall(r"\]: (bedside: [^\n]*)", self.vm.console[:since])
        raise TargetError(f"the box's gateway did not start ({START_ATTEMPTS} tries): {said[-1] if said else ''}")

    async def begin(self, action: str, offset_s: float) -> None:
        """A power cut: QEMU killed outright (the disk as the guest last wrote it). An
        OTA: the release published; the box finds it at its next poll."""
        if action == "ota":
            assert self.ota is not None  # check_plays: only with a fleet
            self._ota_from = self.vm.mark()
            try:
                await asyncio.to_thread(self.ota.publish)
            except FleetError as exc:
                raise TargetError(f"ota: the release could not be published: {exc}") from None
            return
        self.cable.disconnect()
        await asyncio.to_thread(self.vm.stop)
        self.power_cuts += 1

    async def end(self, action: str, offset_s: float, milestone: Milestone) -> None:
        """Power back: the same disk booted again, until the gateway's unit started. An
        OTA: followed on the console to its commit; its reboot's `down` and `up` marked
        as they come (steps may be timed from them)."""
        if action == "ota":
            loop = asyncio.get_running_loop()

            def on_loop(suffix: str, t: float) -> None:  # the console is followed in a thread
                loop.call_soon_threadsafe(milestone, suffix, t)

            await asyncio.to_thread(self._follow_ota, on_loop)
            return
        self.vm = self._machine()
        await asyncio.to_thread(self.boot)
        await asyncio.to_thread(self.wait_ready)

    def _follow_ota(self, milestone: Milestone) -> None:
        vm = self.vm
        # "OTA failed: unreachable" (a poll that did not get through) is retried by the
        # agent; only this release failing ends the step.
        version = re.escape(self.ota.info.version) if self.ota is not None else r"\S+"
        went = vm.wait_for(rf"OTA (rebooting|failed) {version}[^\n]*", OTA_TIMEOUT_S, since=self._ota_from)
        if went.group(1) == "failed":
            raise TargetError(f"the box: {went.group(0).strip()}")
        milestone("down", vm.time_at(went.start()))
        back = vm.wait_for(r"Started bedside\.service - Bedside Gateway", BOOT_TIMEOUT_S, since=went.end())
        self.starts += 1
        milestone("up", vm.time_at(back.start()))
        done = vm.wait_for(r"OTA (committed|failed|rolled_back)[^\n]*", OTA_TIMEOUT_S, since=back.end())
        if done.group(1) != "committed":
            raise TargetError(f"the box: {done.group(0).strip()}")

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
        if self.ota is not None:
            self.ota.stop()
