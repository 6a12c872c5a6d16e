"""Repository upkeep with python-tuf's reference client (tuf.ngclient.Updater) over nginx
with client certificates: days pass (the client's clock is moved, the repository signs
at the same simulated times), the cron job runs, keys are rotated."""

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tuf.api import exceptions
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater
from tuf.ngclient._internal import trusted_metadata_set

from ota.errors import FleetError
from ota.fetch import MtlsFetcher, client_context
from ota.repo import FleetRepo
from ota.rotate import rotate
from tests.integration.helpers import wait_until
from tests.ota.conftest import COMPATIBLE

pytestmark = pytest.mark.integration
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


class _Moved:
    """`datetime` as python-tuf's trust checks see it: the real clock plus `shift`."""

    def __init__(self, shift: dt.timedelta) -> None:
        shift_ = shift

        class Clock(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return dt.datetime.now(tz) + shift_

        self.datetime = Clock
        self.timezone = dt.timezone


def reference_client(box_dir: Path, server, pki, monkeypatch, days: float = 0.0) -> Updater:
    monkeypatch.setattr(trusted_metadata_set, "datetime", _Moved(dt.timedelta(days=days)))
    files = pki.client("gw-1")
    fetcher = MtlsFetcher(client_context(files.ca, files.cert, files.key))
    (box_dir / "dl").mkdir(exist_ok=True)
    return Updater(str(box_dir / "tuf"), f"{server.url}/metadata/", str(box_dir / "dl"), f"{server.url}/targets/",
                   fetcher)  # fmt: skip


def release(tmp_path: Path, fleet: FleetRepo, version: str = "1.1.0", now=T0) -> str:
    path = tmp_path / f"b-{version}.raucb"
    path.write_bytes(os.urandom(8192))
    return fleet.add_release(path, version, COMPATIBLE, now=now)


def bedside(*args):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, check=False)


def test_only_the_timestamp_refreshed_the_repository_dies_on_day_8(tmp_path, fleet, server, pki, box_dir, monkeypatch):
    """The old cron job, shown failing: the snapshot (7 days) expires under it."""
    release(tmp_path, fleet)
    for day in range(1, 9):
        fleet.refresh_timestamp(T0 + dt.timedelta(days=day))
    with pytest.raises(exceptions.ExpiredMetadataError, match="snapshot"):
        reference_client(box_dir, server, pki, monkeypatch, days=8.1).refresh()


@pytest.mark.parametrize("days", [8, 30, 100])
def test_a_daily_refresh_keeps_the_repository_alive(tmp_path, fleet, server, pki, box_dir, monkeypatch, days):
    path = release(tmp_path, fleet)
    renewed = set()
    for day in range(1, days + 1):
        renewed.update(fleet.refresh(T0 + dt.timedelta(days=day)))
    client = reference_client(box_dir, server, pki, monkeypatch, days=days + 0.5)
    client.refresh()
    info = client.get_targetinfo(path)
    assert info is not None
    # the reference client downloads it by its hash-prefixed name (consistent snapshots)
    assert Path(client.download_target(info)).read_bytes() == fleet.target_file(path).read_bytes()
    assert ("targets" in renewed) == (days > 90 - 30)  # targets re-signed only inside its window
    assert all(not s.warn for s in fleet.status(T0 + dt.timedelta(days=days)) if s.role != "root")


def test_consistent_snapshots_serve_every_file_by_version_or_hash(tmp_path, fleet, server, pki, box_dir, monkeypatch):
    path = release(tmp_path, fleet)
    assert Metadata.from_file(str(fleet.meta_dir / "root.json")).signed.consistent_snapshot
    client = reference_client(box_dir, server, pki, monkeypatch)
    client.refresh()
    client.download_target(client.get_targetinfo(path))  # type: ignore[arg-type]
    snap, targets = fleet.load("snapshot").signed.version, fleet.load("targets").signed.version
    for served in (f"/metadata/{snap}.snapshot.json", f"/metadata/{targets}.targets.json",
                   f"/targets/{fleet.target_file(path).relative_to(fleet.targets_dir)}"):  # fmt: skip
        # nginx logs a request when it is finalised
        assert wait_until(lambda s=served: f'GET {s} HTTP/1.1" 200' in (server.dir / "access.log").read_text(), 5)
    log = (server.dir / "access.log").read_text()
    assert "GET /metadata/snapshot.json" not in log and "GET /metadata/targets.json" not in log


def test_status_lists_every_role_and_warns_ahead(tmp_path, fleet):
    lines = [s.line() for s in fleet.status(T0)]
    assert [ln.split()[0] for ln in lines] == ["root", "targets", "snapshot", "timestamp"]
    res = bedside("ota", "status", "--dir", str(fleet.fleet))
    assert res.returncode == 0 and res.stdout.count(" ok\n") == 4, res.stdout
    fleet.refresh_timestamp(days=0.2)  # less than the 0.5-day warning window
    res = bedside("ota", "status", "--dir", str(fleet.fleet))
    assert res.returncode == 1 and "timestamp" in next(ln for ln in res.stdout.splitlines() if "WARN" in ln)
    by_role = {s.role: s for s in fleet.status(T0 + dt.timedelta(days=5))}
    assert by_role["snapshot"].warn and not by_role["targets"].warn  # 2 of 7 days left, warned at 3
    assert by_role["timestamp"].days_left < 0 and "EXPIRED" in by_role["timestamp"].line()


def test_expiry_periods_come_from_fleet_toml(tmp_path, fleet):
    toml = fleet.fleet / "fleet.toml"
    toml.write_text(toml.read_text().replace("snapshot_expiry_days = 7.0", "snapshot_expiry_days = 14.0"))
    fleet = FleetRepo(fleet.fleet)
    fleet.refresh(T0)
    assert fleet.load("snapshot").signed.expires == (T0 + dt.timedelta(days=14)).replace(microsecond=0)
    toml.write_text(toml.read_text() + "snapshot_expiry_dayz = 3\n")
    res = bedside("ota", "refresh", "--dir", str(fleet.fleet))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "snapshot_expiry_dayz: unknown key" in res.stderr
    toml.write_text(toml.read_text().replace("snapshot_expiry_dayz = 3\n", "").replace(
        "timestamp_warn_days = 0.5", "timestamp_warn_days = 2.0"))  # fmt: skip
    with pytest.raises(FleetError, match="timestamp_warn_days: must be below timestamp_expiry_days"):
        FleetRepo(fleet.fleet)


def test_boxes_follow_every_rotation_and_retired_keys_sign_nothing(tmp_path, box_dir, server, pki, monkeypatch):
    from ota.repo import init_fleet

    root = box_dir.parent / "fleet"
    for name in os.listdir(root / "repo" / "metadata"):  # a fresh 2-of-3 fleet served at the same place
        os.unlink(root / "repo" / "metadata" / name)
    for name in os.listdir(root / "keys"):
        os.unlink(root / "keys" / name)
    init_fleet(root, COMPATIBLE, root_keys=3, root_threshold=2)
    fleet = FleetRepo(root)
    (box_dir / "tuf" / "root.json").write_bytes((fleet.meta_dir / "1.root.json").read_bytes())
    path = release(tmp_path, fleet)
    reference_client(box_dir, server, pki, monkeypatch).refresh()  # the box is on root v1
    old_timestamp_key = (root / "keys" / "timestamp.pem").read_bytes()
    with pytest.raises(FleetError, match="needs 2 of the current root keys, 1 given"):
        rotate(fleet, "timestamp", root_keys=[root / "keys" / "root-1.pem"])
    assert not (fleet.meta_dir / "2.root.json").exists()
    for role in ("timestamp", "snapshot", "targets"):
        rotate(fleet, role)
    assert rotate(fleet, "root", new_keys=2, threshold=2) == 5
    assert len(list((root / "keys" / "retired").glob("root-*.pem"))) == 3
    for key in [*(root / "keys").glob("*.pem"), *(root / "keys" / "retired").glob("*.pem")]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((root / "keys" / "retired").stat().st_mode) == 0o700
    client = reference_client(box_dir, server, pki, monkeypatch)
    client.refresh()  # walks 2.root.json … 5.root.json
    assert Metadata.from_file(str(box_dir / "tuf" / "root.json")).signed.version == 5
    assert client.get_targetinfo(path) is not None
    # A timestamp signed with the retired key is refused by a box on the new root.
    from ota.repo import load_key

    retired = root / "keys" / "old-ts.pem"
    retired.write_bytes(old_timestamp_key)
    md = fleet.load("timestamp")
    md.signed.version += 1
    md.signatures.clear()
    md.sign(load_key(retired))
    md.to_file(str(fleet.meta_dir / "timestamp.json"))
    with pytest.raises(exceptions.UnsignedMetadataError):
        reference_client(box_dir, server, pki, monkeypatch).refresh()


def test_rotate_from_the_command_line(tmp_path, fleet):
    res = bedside("ota", "rotate", "snapshot", "--dir", str(fleet.fleet))
    assert res.returncode == 0 and res.stdout.startswith("rotated snapshot: root v2"), res.stderr
    bad = bedside("ota", "rotate", "root", "--dir", str(fleet.fleet), "--root-key", str(fleet.fleet / "keys" /
                  "targets.pem"))  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not one of the current root keys" in bad.stderr
    assert not (fleet.meta_dir / "3.root.json").exists()
    ok = bedside("ota", "refresh", "--dir", str(fleet.fleet))
    assert ok.returncode == 0 and ok.stdout.startswith("re-signed snapshot, timestamp")
