"""The fleet tools' refusals after an outside review: each is one line on stderr, exit 2,
and leaves the fleet directory byte for byte as it was (hashed before and after), so no
later `refresh` can make half of a refused change live. Rotations that succeed give a
root python-tuf's client accepts."""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Targets
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

import ota.repo
import ota.rotate
from ota.errors import FleetError
from ota.repo import FleetRepo, init_fleet, load_key
from ota.rollout import RolloutPolicy
from ota.rotate import rotate
from tests.ota.conftest import COMPATIBLE

pytestmark = pytest.mark.integration


def fleet_digest(fleet: Path) -> str:
    """Every path under the fleet directory with its mode and content."""
    h = hashlib.sha256()
    for path in sorted(fleet.rglob("*")):
        h.update(f"{path.relative_to(fleet)} {stat.S_IMODE(path.stat().st_mode):o}\n".encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def bedside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, check=False)


def assert_refused(res: subprocess.CompletedProcess[str], says: str) -> None:
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and says in res.stderr and "Traceback" not in res.stderr, res.stderr


def served_rollout(fleet: FleetRepo) -> dict[str, object]:
    """The rollout a box sees: the targets version the served snapshot names, read from
    its versioned file (what a TUF client fetches), not the tools' plain copy."""
    version = fleet.load("snapshot").signed.meta["targets.json"].version
    targets = Metadata[Targets].from_file(str(fleet.meta_dir / f"{version}.targets.json")).signed
    rollout: dict[str, object] = targets.targets["bedside-test/1.1.0/b.raucb"].custom["rollout"]
    return rollout


@pytest.fixture
def released(tmp_path: Path, fleet: FleetRepo) -> FleetRepo:
    bundle = tmp_path / "b.raucb"
    bundle.write_bytes(os.urandom(4096))
    fleet.add_release(bundle, "1.1.0", COMPATIBLE, rollout=RolloutPolicy(percent=10))
    return fleet


def test_a_command_refused_for_a_missing_key_leaves_nothing_for_refresh_to_make_live(tmp_path, released):
    """The reviewer's sequence: halt; snapshot key gone; resume at 100 % (refused); key
    back; the cron `refresh` must still serve the halted 10 % rollout."""
    fleet = released.fleet
    assert bedside("ota", "rollout", "1.1.0", "--dir", str(fleet), "--halt").returncode == 0
    key = fleet / "keys" / "snapshot.pem"
    key.rename(tmp_path / "snapshot.pem")
    before = fleet_digest(fleet)
    res = bedside("ota", "rollout", "1.1.0", "--dir", str(fleet), "--resume", "--percent", "100")
    assert_refused(res, "snapshot.pem: cannot load key")
    assert fleet_digest(fleet) == before
    (tmp_path / "snapshot.pem").rename(key)
    assert bedside("ota", "refresh", "--dir", str(fleet)).returncode == 0
    assert served_rollout(FleetRepo(fleet)) == {"percent": 10, "cohorts": [], "not_before": "", "halted": True}


@pytest.mark.parametrize(
    ("args", "missing"),
    [
        (["refresh"], "timestamp"),
        (["refresh"], "snapshot"),
        (["rollout", "1.1.0", "--halt"], "timestamp"),
        (["rollout", "1.1.0", "--halt"], "targets"),
        (["refresh-timestamp"], "timestamp"),
    ],
)
def test_any_missing_online_key_changes_nothing(tmp_path, released, args, missing):
    fleet = released.fleet
    (fleet / "keys" / f"{missing}.pem").rename(tmp_path / "away.pem")
    before = fleet_digest(fleet)
    assert_refused(bedside("ota", *args, "--dir", str(fleet)), f"{missing}.pem: cannot load key")
    assert fleet_digest(fleet) == before


def test_a_release_is_copied_into_the_repository_only_once_signed(tmp_path, released):
    bundle = tmp_path / "c.raucb"
    bundle.write_bytes(os.urandom(4096))
    (released.fleet / "keys" / "targets.pem").rename(tmp_path / "away.pem")
    before = fleet_digest(released.fleet)
    with pytest.raises(FleetError, match=r"targets\.pem: cannot load key"):
        released.add_release(bundle, "1.2.0", COMPATIBLE)
    assert fleet_digest(released.fleet) == before
    assert not any(released.targets_dir.rglob("*c.raucb"))


def test_a_write_that_fails_half_way_is_undone(tmp_path, released, monkeypatch):
    """Disk full as the last metadata file is written: the bundle and the versioned files
    this call wrote go again; the plain names were never touched."""
    bundle = tmp_path / "c.raucb"
    bundle.write_bytes(os.urandom(4096))
    before = fleet_digest(released.fleet)
    write = ota.repo._write_public

    def full_disk(path: Path, data: bytes) -> None:
        if path.name == ".timestamp.json.next":
            raise OSError(28, "No space left on device", str(path))
        write(path, data)

    monkeypatch.setattr(ota.repo, "_write_public", full_disk)
    with pytest.raises(OSError, match="No space left"):
        released.add_release(bundle, "1.2.0", COMPATIBLE)
    assert fleet_digest(released.fleet) == before


@pytest.mark.parametrize("days", ["-3", "1e9", "nan", "inf", "0", "31"])
def test_refresh_timestamp_stays_within_the_fleet_limits(released, days):
    before = fleet_digest(released.fleet)
    res = bedside("ota", "refresh-timestamp", "--dir", str(released.fleet), "--expires-days", days)
    assert_refused(res, "must be between 0.04 and 30 days")
    assert fleet_digest(released.fleet) == before


def test_refresh_timestamp_within_the_limits_signs(released):
    res = bedside("ota", "refresh-timestamp", "--dir", str(released.fleet), "--expires-days", "0.5")
    assert res.returncode == 0, res.stderr
    left = next(s for s in FleetRepo(released.fleet).status() if s.role == "timestamp").days_left
    assert 0.49 < left <= 0.5


_READERS = {  # the commands that read each role's metadata
    "targets": (["rollout", "1.1.0", "--halt"], ["status"], ["refresh"], ["rotate", "targets"]),
    "snapshot": (
        ["rollout", "1.1.0", "--halt"],
        ["status"],
        ["refresh"],
        ["refresh-timestamp"],
        ["rotate", "timestamp"],
    ),
    "root": (["status"], ["rotate", "snapshot"]),
}


@pytest.mark.parametrize("role", sorted(_READERS))
def test_corrupt_metadata_is_one_line(released, role):
    path = released.meta_dir / f"{role}.json"
    path.write_bytes(path.read_bytes()[:200])  # truncated mid-write, or edited by hand
    before = fleet_digest(released.fleet)
    for args in _READERS[role]:
        assert_refused(bedside("ota", *args, "--dir", str(released.fleet)), "unreadable TUF metadata")
    assert fleet_digest(released.fleet) == before


def test_metadata_files_are_world_readable_not_executable(released):
    rotate(released, "snapshot")
    released.refresh()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in released.meta_dir.iterdir()}
    assert len(modes) >= 10 and set(modes.values()) == {0o644}, modes


# -- rotation with duplicated root keys --------------------------------------------------


@pytest.fixture
def two_of_three(tmp_path: Path) -> FleetRepo:
    init_fleet(tmp_path / "f3", COMPATIBLE, root_keys=3, root_threshold=2)
    return FleetRepo(tmp_path / "f3")


def box_accepts(fleet: FleetRepo, version: int) -> bool:
    """What a box on root v1 does with N.root.json: python-tuf's own trust checks."""
    trusted = TrustedMetadataSet((fleet.meta_dir / "1.root.json").read_bytes(), EnvelopeType.METADATA)
    for n in range(2, version + 1):
        trusted.update_root((fleet.meta_dir / f"{n}.root.json").read_bytes())
    return trusted.root.version == version


def test_a_key_named_twice_counts_once_and_the_rotated_root_verifies(two_of_three):
    keys = two_of_three.fleet / "keys"
    named = [a for k in ("root-1", "root-1", "root-2") for a in ("--root-key", str(keys / f"{k}.pem"))]
    res = bedside("ota", "rotate", "snapshot", "--dir", str(two_of_three.fleet), *named)
    assert res.returncode == 0 and res.stdout.startswith("rotated snapshot: root v2"), res.stderr
    md = Metadata.from_file(str(two_of_three.meta_dir / "2.root.json"))
    assert {load_key(keys / f"root-{i}.pem").public_key.keyid for i in (1, 2)} <= set(md.signatures)
    assert box_accepts(two_of_three, 2)


def test_two_copies_of_one_root_key_are_refused_as_the_same_key(tmp_path, two_of_three):
    keys = two_of_three.fleet / "keys"
    media = tmp_path / "media"
    media.mkdir()
    shutil.copyfile(keys / "root-1.pem", media / "root-1.pem")
    before = fleet_digest(two_of_three.fleet)
    res = bedside("ota", "rotate", "snapshot", "--dir", str(two_of_three.fleet), "--root-key",
                  str(keys / "root-1.pem"), "--root-key", str(media / "root-1.pem"))  # fmt: skip
    assert_refused(res, "needs 2 of the current root keys, 1 given")
    assert f"{keys / 'root-1.pem'} and {media / 'root-1.pem'} are the same key" in res.stderr
    assert fleet_digest(two_of_three.fleet) == before


@pytest.mark.parametrize("role", ["snapshot", "root"])
def test_a_new_root_that_would_not_verify_is_never_written(two_of_three, monkeypatch, role):
    """The last line of defence: had the signers been picked wrongly (the reviewer's one
    key twice), the new root is checked as a box would check it before any file moves."""
    one = load_key(two_of_three.fleet / "keys" / "root-1.pem")
    monkeypatch.setattr(ota.rotate, "_root_signers", lambda *_a: [one, one])
    before = fleet_digest(two_of_three.fleet)
    with pytest.raises(FleetError, match="root v2 would not verify with the current root keys"):
        rotate(two_of_three, role)
    assert fleet_digest(two_of_three.fleet) == before
