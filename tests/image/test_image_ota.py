"""OTA inside the VM: the box (booted from the image in QEMU) polls a fleet server on the
host — reachable only through user-mode networking with restrict=on and one guestfwd to
127.0.0.1 — refuses a bundle signed by another CA, and a release that cannot start falls
back to the old slot through GRUB's boot counting. The good path (install into slot B,
reboot, health gate, commit, with alarms checked all the while) is the VM suite's
`alarms-during-ota` scenario (tests/image/test_image_hil.py)."""

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.fleet_server import FleetServer, write_fleet_pki
from hil.vm import Vm
from ota.pki import make_signing_pki
from ota.repo import FleetRepo
from tests.image.conftest import COMPATIBLE, REPO, Built, data_partition, own_fleet, verity_bundle

pytestmark = pytest.mark.integration
FLEET_IP, FLEET_PORT = "10.0.2.100", 8443


def provision(disk: Path, built: Built, pki_dir: Path, workdir: Path) -> None:
    """What the provisioning station does: site config, box certificate, fleet CA and the
    trusted TUF root onto the data partition (partition 4), before the first boot."""
    with data_partition(disk, built, workdir) as data:
        mnt, uid, gid = data.root, data.uid, data.gid
        config = mnt / "config"
        config.mkdir()
        shutil.copyfile(built.fleet.meta_dir / "1.root.json", config / "root.json")
        (config / "gateway.toml").write_text(f"""
[gateway]
bed_id = "bed-1"
registry_path = "/data/bedside/registry.json"
log_level = "info"
[queue]
path = "/data/bedside/store.db"
key_path = "/data/bedside/store.key"
[ota]
server_url = "https://{FLEET_IP}:{FLEET_PORT}"
compatible = "{COMPATIBLE}"
base_version = "1.0.0"
data_dir = "/data/ota"
root_path = "/data/config/root.json"
poll_interval_s = 10.0
poll_jitter_s = 0.0
health_timeout_s = 120.0
ca_path = "/data/keys/fleet-ca.pem"
cert_path = "/data/keys/box.pem"
key_path = "/data/keys/box.key"
reboot_request_path = "/run/bedside/reboot-requested"
""")
        keys = mnt / "keys"
        keys.mkdir(exist_ok=True)
        for name in ("fleet-ca.pem", "box.pem", "box.key"):
            shutil.copyfile(pki_dir / name, keys / name)
        (mnt / "ota").mkdir()
        for path in (config, keys, mnt / "ota", *config.iterdir(), *keys.iterdir()):
            shutil.chown(path, uid, gid)
        (keys / "box.key").chmod(0o600)


@contextlib.contextmanager
def box_with_fleet(built: Built, repo: FleetRepo, tmp_path: Path) -> Iterator[tuple[Vm, FleetServer]]:
    """A fleet server on host loopback serving `repo` and a provisioned box booting in QEMU,
    reaching only it."""
    pki = tmp_path / "pki"
    write_fleet_pki(pki, FLEET_IP)
    fleet = FleetServer.with_pki(tmp_path / "nginx", repo.fleet / "repo", pki)
    fleet.start()
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(built.out / "bedside-amd64.img"), str(disk)], check=True)
    provision(disk, built, pki, tmp_path)
    # One host command per guest connection (a plain tcp: chardev would carry only one).
    pipe = f"{sys.executable} {REPO / 'hil' / 'tcp_pipe.py'} 127.0.0.1 {fleet.port}"
    nic = f"user,restrict=on,guestfwd=tcp:{FLEET_IP}:{FLEET_PORT}-cmd:{pipe}"
    vm = Vm(disk, tmp_path / "vm", memory_mb=1536, nic=nic, allow_reboot=True)
    vm.start()
    try:
        yield vm, fleet
    finally:
        vm.stop()
        fleet.stop()


def rogue_release(built: Built, workdir: Path) -> Path:
    """Release 1.0.9, a valid TUF target whose bundle is signed by a CA the box does not trust."""
    make_signing_pki(workdir / "rogue-ca", "rogue")
    small = workdir / "rogue.img"
    small.write_bytes(os.urandom(1024 * 1024))  # RAUC checks the signature before the content
    return verity_bundle(built, "1.0.9", workdir / "bedside-1.0.9.raucb", small, signing=workdir / "rogue-ca")


def broken_release(built: Built, dest: Path, workdir: Path) -> Path:
    """Release 1.1.1 whose gateway cannot start (its entry point exits at once)."""
    tree = workdir / "broken-root"
    subprocess.run(["unsquashfs", "-q", "-d", str(tree), str(built.out / "rootfs.sqfs")], check=True,
                   capture_output=True)  # fmt: skip
    entry = tree / "opt" / "bedside" / "venv" / "bin" / "bedside"
    entry.write_text("#!/bin/sh\necho 'bedside: broken release' >&2\nexit 1\n")
    squash = workdir / "broken.sqfs"
    subprocess.run(["mksquashfs", str(tree), str(squash), "-noappend", "-comp", "xz", "-quiet"], check=True,
                   capture_output=True)  # fmt: skip
    shutil.rmtree(tree)
    return verity_bundle(built, "1.1.1", dest, squash)


def test_a_release_that_cannot_start_falls_back_to_the_old_slot(built, tmp_path):
    # Install, reboot into B and commit: `tests/image/test_image_hil.py` (the VM suite's
    # alarms-during-ota scenario). Here: what the box refuses and what it rolls back.
    repo = own_fleet(built, tmp_path)
    repo.add_release(rogue_release(built, tmp_path), "1.0.9", COMPATIBLE)  # publish would refuse it
    with box_with_fleet(built, repo, tmp_path) as (vm, fleet):
        vm.wait_for(r"Started bedside\.service - Bedside Gateway", 300)
        # RAUC inside the VM refuses the bundle from another CA; the box stays on A and
        # gives that release up.
        vm.wait_for(r"OTA failed 1\.0\.9: install: RAUC refused[^\n]*", 600)
        repo.publish(broken_release(built, tmp_path / "bedside-1.1.1.raucb", tmp_path), "1.1.1", COMPATIBLE)
        vm.wait_for(r"OTA rebooting 1\.1\.1", 900)
        vm.wait_for(r"Booting `Bedside Gateway slot B'", 300)
        vm.wait_for(r"bedside: broken release", 300)
        # The gateway cannot start: systemd's start limit reboots, GRUB skips the
        # untried-but-never-good slot B, A comes back and the agent records the rollback.
        second_a = r"Booting `Bedside Gateway slot B'[\s\S]*Booting `Bedside Gateway slot A'"
        vm.wait_for(second_a, 600)
        vm.wait_for(r"OTA rolled_back 1\.1\.1: booted 1\.0\.0, not 1\.1\.1", 600)
    log = (fleet.dir / "access.log").read_text()
    assert "GET /targets/bedside-gw-amd64/1.0.9/" in log and "GET /targets/bedside-gw-amd64/1.1.1/" in log
