"""TUF over a real nginx with client certificates: the happy path and every metadata attack."""

import os
import stat
from pathlib import Path

import pytest

from ota.client import choose_release
from ota.errors import FleetError, RefusedUpdate
from ota.fetch import FetchLimits
from ota.repo import FleetRepo, init_fleet
from tests.integration.helpers import wait_until
from tests.ota.conftest import COMPATIBLE, make_client


def bundle(tmp_path: Path, name: str, size: int = 4096) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def test_keys_are_private_and_made_once(tmp_path, fleet):
    for key in (fleet.fleet / "keys").glob("*.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((fleet.fleet / "rauc" / "signing.key").stat().st_mode) == 0o600
    with pytest.raises(FleetError, match="exists already"):
        init_fleet(fleet.fleet, COMPATIBLE)
    with pytest.raises(FleetError, match="root-threshold"):
        init_fleet(tmp_path / "other", COMPATIBLE, root_keys=2, root_threshold=3)


def test_publish_then_the_box_finds_and_downloads_the_newest_allowed_release(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    fleet.add_release(bundle(tmp_path, "b.raucb"), "1.2.0", COMPATIBLE, min_version="1.1.0")
    fleet.add_release(bundle(tmp_path, "c.raucb"), "9.0.0", "other-board")
    client = make_client(box_dir, server.url, pki)
    releases = client.check()
    chosen, skipped = choose_release(releases, COMPATIBLE, "1.0.0")
    assert chosen is not None and chosen.version == "1.1.0"  # 1.2.0 needs 1.1.0 first
    assert any("needs 1.1.0" in s for s in skipped) and any("other-board" in s for s in skipped)
    path = client.download(chosen)
    assert path.read_bytes() == (tmp_path / "a.raucb").read_bytes()
    chosen, _ = choose_release(releases, COMPATIBLE, "1.1.0")
    assert chosen is not None and chosen.version == "1.2.0"


def refused(client) -> RefusedUpdate:
    with pytest.raises(RefusedUpdate) as err:
        client.check()
    return err.value


def test_freeze_expired_timestamp_is_refused(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    fleet.refresh_timestamp(days=-1)  # a mirror stuck on metadata that has expired
    assert refused(make_client(box_dir, server.url, pki)).reason == "freeze"


def test_rollback_to_older_metadata_is_refused(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    saved = {n: (fleet.meta_dir / n).read_bytes() for n in ("timestamp.json", "snapshot.json", "targets.json")}
    fleet.add_release(bundle(tmp_path, "b.raucb"), "1.2.0", COMPATIBLE)
    client = make_client(box_dir, server.url, pki)
    assert {r.version for r in client.check()} == {"1.1.0", "1.2.0"}
    for name, data in saved.items():  # the server replays the older release's metadata
        (fleet.meta_dir / name).write_bytes(data)
    assert refused(client).reason == "rollback"


def test_mix_and_match_is_refused(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    old_targets = (fleet.meta_dir / "targets.json").read_bytes()
    fleet.add_release(bundle(tmp_path, "b.raucb"), "1.2.0", COMPATIBLE)
    served = fleet.meta_dir / f"{fleet.load('targets').signed.version}.targets.json"  # consistent snapshots
    served.write_bytes(old_targets)  # new snapshot, old targets
    assert refused(make_client(box_dir, server.url, pki)).reason == "mix_and_match"


def test_tampered_metadata_signature_is_refused(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    path = fleet.meta_dir / f"{fleet.load('targets').signed.version}.targets.json"  # what the box fetches
    path.write_text(path.read_text().replace('"1.1.0"', '"1.9.0"'))
    assert refused(make_client(box_dir, server.url, pki)).reason == "bad_signature"


def test_tampered_bundle_is_refused_and_not_kept(tmp_path, fleet, server, pki, box_dir):
    name = fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    target = fleet.target_file(name)
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    client = make_client(box_dir, server.url, pki)
    (release,) = client.check()
    with pytest.raises(RefusedUpdate) as err:
        client.download(release)
    assert err.value.reason == "tampered"
    assert not list((box_dir / "downloads").iterdir())


def test_endless_data_is_cut_at_the_signed_length(tmp_path, fleet, server, pki, box_dir):
    name = fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    fleet.target_file(name).write_bytes(os.urandom(4 * 1024 * 1024))
    client = make_client(box_dir, server.url, pki)
    (release,) = client.check()
    with pytest.raises(RefusedUpdate) as err:
        client.download(release)
    assert err.value.reason == "oversized"
    # and for metadata: a timestamp far beyond its length limit
    (fleet.meta_dir / "timestamp.json").write_bytes(b" " * (1024 * 1024))
    assert refused(make_client(box_dir, server.url, pki)).reason == "oversized"


def test_slow_retrieval_is_cut_off(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb", size=64 * 1024), "1.1.0", COMPATIBLE)
    limits = FetchLimits(read_timeout_s=1.0, metadata_deadline_s=2.0, bundle_deadline_s=2.0)
    client = make_client(box_dir, server.url + "/slow", pki, limits=limits)
    assert refused(client).reason == "slow_retrieval"


def test_interrupted_download_resumes(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb", size=200_000), "1.1.0", COMPATIBLE)
    client = make_client(box_dir, server.url, pki)
    (release,) = client.check()
    part = box_dir / "downloads" / (release.path.replace("/", "_") + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes((tmp_path / "a.raucb").read_bytes()[:123_456])  # the power went mid-download
    path = client.download(release)
    assert path.read_bytes() == (tmp_path / "a.raucb").read_bytes()
    # a range request, not a fresh download (nginx logs when the request is finalised)
    assert wait_until(lambda: " 206 " in (server.dir / "access.log").read_text(), 5)


def test_server_certificate_from_another_ca_is_refused(tmp_path, fleet, server, pki, box_dir):
    from hil.broker import make_pki

    other = make_pki(tmp_path / "other-pki")
    client = make_client(box_dir, server.url, pki, ca=other.ca)  # the box trusts only its fleet CA
    assert refused(client).reason == "server_untrusted"


@pytest.mark.parametrize("name", ["rogue", "expired"])
def test_box_without_a_valid_client_certificate_gets_nothing(tmp_path, fleet, server, pki, box_dir, name):
    fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    assert refused(make_client(box_dir, server.url, pki, name=name)).reason == "client_refused"


def test_publish_refuses_bad_versions(tmp_path, fleet):
    with pytest.raises(FleetError, match="not a release version"):
        fleet.add_release(bundle(tmp_path, "a.raucb"), "v1", COMPATIBLE)
    with pytest.raises(FleetError, match="no repository"):
        FleetRepo(tmp_path / "nowhere")


def test_an_older_or_equal_release_is_never_chosen(tmp_path, fleet, server, pki, box_dir):
    fleet.add_release(bundle(tmp_path, "a.raucb"), "1.1.0", COMPATIBLE)
    fleet.add_release(bundle(tmp_path, "b.raucb"), "1.2.0", COMPATIBLE)
    releases = make_client(box_dir, server.url, pki).check()
    chosen, skipped = choose_release(releases, COMPATIBLE, "1.2.0")
    assert chosen is None
    assert sorted(skipped) == [
        "bedside-test/1.1.0/a.raucb: 1.1.0 is not newer than installed 1.2.0",
        "bedside-test/1.2.0/b.raucb: 1.2.0 is not newer than installed 1.2.0",
    ]
