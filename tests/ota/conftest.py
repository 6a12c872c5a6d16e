"""OTA fixtures: a fleet repository, a PKI, a real nginx fleet server, a box's TUF state."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.broker import Pki, make_pki
from hil.fleet_server import FleetServer
from hil.rauc_bench import host_bundle_format
from ota.client import UpdateClient
from ota.fetch import FetchLimits, MtlsFetcher, client_context
from ota.fleet_config import FleetSettings
from ota.repo import FleetRepo, init_fleet

COMPATIBLE = "bedside-test"


# What the bench's RAUC installs on this host (verity needs the device mapper; see
# hil/rauc_bench.py); fleets that install on the host publish that format.
HOST_FORMAT = host_bundle_format()


@pytest.fixture
def fleet(tmp_path: Path) -> FleetRepo:
    settings = FleetSettings(bundle_format="verity" if HOST_FORMAT == "verity" else "any")
    init_fleet(tmp_path / "fleet", COMPATIBLE, settings=settings)
    return FleetRepo(tmp_path / "fleet")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def server(tmp_path: Path, fleet: FleetRepo, pki: Pki) -> Iterator[FleetServer]:
    srv = FleetServer(
        tmp_path / "nginx", fleet.fleet / "repo", ca=pki.ca, cert=str(pki.dir / "broker.pem"),
        key=str(pki.dir / "broker.key"),
    )  # fmt: skip
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def box_dir(tmp_path: Path, fleet: FleetRepo) -> Path:
    """A box provisioned with the fleet's root metadata (as the image would carry it)."""
    meta = tmp_path / "box" / "tuf"
    meta.mkdir(parents=True)
    shutil.copyfile(fleet.meta_dir / "1.root.json", meta / "root.json")
    return tmp_path / "box"


def make_client(
    box_dir: Path, url: str, pki: Pki, name: str = "gw-1", limits: FetchLimits | None = None, ca: str | None = None
) -> UpdateClient:
    files = pki.client(name)
    fetcher = MtlsFetcher(client_context(ca or files.ca, files.cert, files.key), limits or FetchLimits())
    return UpdateClient(box_dir / "tuf", url, fetcher, box_dir / "downloads")
