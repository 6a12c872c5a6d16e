"""Build the amd64 image once per test run, signed with a fleet's RAUC PKI."""

import subprocess
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


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("image")
    init_fleet(base / "fleet", COMPATIBLE)
    out = base / "out"
    cache = tmp_path_factory.getbasetemp() / "image-cache"  # the rootfs, by its inputs' hash, for this run
    res = subprocess.run(
        ["bash", str(REPO / "image" / "build"), "--arch", "amd64", "--out", str(out), "--cache", str(cache),
         "--version", "1.0.0", "--signing", str(base / "fleet" / "rauc")],
        capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return Built(out, FleetRepo(base / "fleet"))
