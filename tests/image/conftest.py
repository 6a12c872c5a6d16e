"""Build each image once per test run (amd64, arm64), signed with a fleet's RAUC PKI; the
debootstrapped roots are cached by their inputs' hash for the run."""

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

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
