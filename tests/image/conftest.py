"""Build each image once per test run (amd64, arm64), signed with a fleet's RAUC PKI; the
bootstrapped roots (mmdebstrap) are cached by their inputs' hash for the run."""

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hil.rauc_bench import build_bundle
from ota.repo import FleetRepo, init_fleet

REPO = Path(__file__).resolve().parents[2]
COMPATIBLE = "bedside-gw-amd64"


@dataclass(frozen=True)
class Built:
    out: Path
    fleet: FleetRepo


def build(tmp_path_factory: pytest.TempPathFactory, arch: str) -> Built:
    base = tmp_path_factory.mktemp(f"image-{arch}")
    init_fleet(base / "fleet", f"bedside-gw-{arch}")
    out = base / "out"
    cache = tmp_path_factory.getbasetemp() / "image-cache"  # the rootfs, by its inputs' hash, for this run
    started = time.monotonic()
    res = subprocess.run(
        ["bash", str(REPO / "image" / "build"), "--arch", arch, "--out", str(out), "--cache", str(cache),
         "--version", "1.0.0", "--signing", str(base / "fleet" / "rauc")],
        capture_output=True, text=True, timeout=2400, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    print(f"image/build --arch {arch}: {time.monotonic() - started:.0f} s")  # shown with -s / on failure
    return Built(out, FleetRepo(base / "fleet"))


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory, "amd64")


@pytest.fixture(scope="session")
def built_arm64(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory, "arm64")


@dataclass(frozen=True)
class DataPartition:
    root: Path  # where the disk image's data partition is mounted
    uid: int  # the image's bedside user
    gid: int


@contextlib.contextmanager
def data_partition(disk: Path, built: Built, workdir: Path) -> Iterator[DataPartition]:
    """The disk image's data partition (partition 4) mounted through a loop device, as a
    provisioning station writes it before the first boot (site config, keys)."""
    start = int(subprocess.run(["sgdisk", "-i", "4", str(disk)], capture_output=True, text=True, check=True)
                .stdout.split("First sector: ")[1].split()[0])  # fmt: skip
    passwd = subprocess.run(["unsquashfs", "-cat", str(built.out / "rootfs.sqfs"), "etc/passwd"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    uid, gid = next(line.split(":")[2:4] for line in passwd.splitlines() if line.startswith("bedside:"))
    mnt = workdir / "data"
    mnt.mkdir()
    loop = subprocess.run(["losetup", "-f", "--show", "-o", str(start * 512), str(disk)], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    subprocess.run(["mount", loop, str(mnt)], check=True)
    try:
        yield DataPartition(mnt, int(uid), int(gid))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        subprocess.run(["losetup", "-d", loop], check=True)


def verity_bundle(
    built: Built, version: str, dest: Path, rootfs: Path | None = None, signing: Path | None = None
) -> Path:
    """The bench's bundle helper, shipping the image's squashfs (or `rootfs`) as rootfs.img."""
    rauc = signing or built.fleet.fleet / "rauc"
    return build_bundle(
        dest,
        compatible=COMPATIBLE,
        version=version,
        cert=rauc / "signing.pem",
        key=rauc / "signing.key",
        keyring=rauc / "ca.pem",
        image=rootfs or built.out / "rootfs.sqfs",
    )
