"""`bedside ota publish` looks inside the bundle with `rauc info --keyring` before it signs:
every refusal is one line, exit 2, and leaves the repository byte for byte as it was."""

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hil.rauc_bench import build_bundle
from ota.pki import make_signing_pki
from ota.repo import FleetRepo, init_fleet

pytestmark = pytest.mark.integration
AMD64 = "bedside-gw-amd64"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fleet (default settings: verity required) and bundles built once for the module."""
    base = tmp_path_factory.mktemp("publish")
    init_fleet(base / "fleet", AMD64)
    rauc = base / "fleet" / "rauc"
    make_signing_pki(base / "rogue", "rogue")

    def bundle(name: str, signing: Path = rauc, **kw) -> Path:
        kw = {"compatible": AMD64, "version": "1.2.0", **kw}
        return build_bundle(base / name, cert=signing / "signing.pem", key=signing / "signing.key",
                            keyring=signing / "ca.pem", **kw)  # fmt: skip

    shutil.copytree(base / "fleet", base / "spare")  # same keys and RAUC CA; nothing ever published
    junk = base / "junk.raucb"
    junk.write_bytes(b"not a bundle\n" * 100)
    return {
        "fleet": base / "fleet",
        "spare": base / "spare",
        "verity": bundle("verity.raucb"),
        "plain": bundle("plain.raucb", bundle_format="plain"),
        "rogue": bundle("rogue.raucb", signing=base / "rogue"),
        "junk": junk,
    }


def bedside(*args):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, check=False)


def publish(made, bundle: str, version="1.2.0", compatible=AMD64, *extra):
    return bedside("ota", "publish", str(made[bundle]), "--dir", str(made["fleet"]), "--version", version,
                   "--compatible", compatible, *extra)  # fmt: skip


def repo_digest(fleet: Path) -> str:
    h = hashlib.sha256()
    for path in sorted((fleet / "repo").rglob("*")):
        h.update(str(path).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(
    ("bundle", "version", "compatible", "says"),
    [
        ("junk", "1.2.0", AMD64, "refused by rauc info with the fleet's keyring"),
        ("rogue", "1.2.0", AMD64, "refused by rauc info with the fleet's keyring"),
        ("plain", "1.2.0", AMD64, "a plain bundle; the image's RAUC accepts only verity bundles"),
        ("verity", "2.0.0", "bedside-gw-arm64", "its manifest says compatible 'bedside-gw-amd64', published as "
         "'bedside-gw-arm64'"),
        ("verity", "2.0.0", AMD64, "its manifest says version '1.2.0', published as '2.0.0'"),
    ],
)  # fmt: skip
def test_a_bundle_the_box_would_refuse_is_not_published(made, bundle, version, compatible, says):
    before = repo_digest(made["fleet"])
    res = publish(made, bundle, version, compatible)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and says in res.stderr and "Traceback" not in res.stderr
    assert repo_digest(made["fleet"]) == before


def test_a_good_verity_bundle_is_published_offered_to_nobody_until_rolled_out(made):
    res = publish(made, "verity")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "published bedside-gw-amd64/1.2.0/verity.raucb (rollout 0 %)"
    target = FleetRepo(made["fleet"]).load("targets").signed.targets["bedside-gw-amd64/1.2.0/verity.raucb"]
    assert target.custom["rollout"] == {"percent": 0, "cohorts": [], "not_before": "", "halted": False}
    info = subprocess.run(["rauc", "info", f"--keyring={made['fleet'] / 'rauc' / 'ca.pem'}", str(made["verity"])],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert re.search(r"^Bundle Format:\s+verity$", info.stdout, re.M)  # what the image takes (any RAUC alignment)


def test_a_fleet_of_plain_bundle_boxes_may_say_so(made, tmp_path):
    init_fleet(tmp_path / "old", AMD64)
    toml = tmp_path / "old" / "fleet.toml"
    toml.write_text(toml.read_text().replace('bundle_format = "verity"', 'bundle_format = "any"'))
    rauc = tmp_path / "old" / "rauc"
    plain = build_bundle(tmp_path / "p.raucb", compatible=AMD64, version="1.2.0", cert=rauc / "signing.pem",
                         key=rauc / "signing.key", keyring=rauc / "ca.pem", bundle_format="plain")  # fmt: skip
    for bundle, code in ((plain, 0), (made["plain"], 2)):  # the other fleet's CA: refused whatever the format
        res = bedside("ota", "publish", str(bundle), "--dir", str(tmp_path / "old"), "--version", "1.2.0",
                      "--compatible", AMD64)  # fmt: skip
        assert res.returncode == code, res.stderr


def test_a_published_version_is_never_replaced_and_its_halt_stays(made):
    """Publishing (compatible, version) again — same bundle or another file name — is
    refused: it would replace the release under boxes downloading it and reset its rollout."""
    if "1.2.0" not in published_paths(made["fleet"]):
        assert publish(made, "verity").returncode == 0
    halt = bedside("ota", "rollout", "1.2.0", "--dir", str(made["fleet"]), "--halt")
    assert halt.returncode == 0, halt.stderr
    renamed = made["verity"].with_name("verity-again.raucb")
    renamed.write_bytes(made["verity"].read_bytes())
    before = repo_digest(made["fleet"])
    for bundle in (made["verity"], renamed):
        res = bedside("ota", "publish", str(bundle), "--dir", str(made["fleet"]), "--version", "1.2.0",
                      "--compatible", AMD64, "--percent", "100")  # fmt: skip
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stdout + res.stderr
        assert "bedside-gw-amd64 1.2.0: already published as bedside-gw-amd64/1.2.0/verity.raucb" in res.stderr
    assert repo_digest(made["fleet"]) == before
    target = FleetRepo(made["fleet"]).load("targets").signed.targets["bedside-gw-amd64/1.2.0/verity.raucb"]
    assert target.custom["rollout"]["halted"] is True


def published_paths(fleet: Path) -> str:
    return " ".join(FleetRepo(fleet).load("targets").signed.targets)


def test_a_bundle_is_copied_into_the_repository_only_once_every_role_is_signed(made, tmp_path):
    """Publish with the snapshot key away: refused before the bundle reaches repo/targets/."""
    spare = made["spare"]
    (spare / "keys" / "snapshot.pem").rename(tmp_path / "snapshot.pem")
    before = repo_digest(spare)
    res = bedside("ota", "publish", str(made["verity"]), "--dir", str(spare), "--version", "1.2.0",
                  "--compatible", AMD64)  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "snapshot.pem: cannot load key" in res.stderr
    assert repo_digest(spare) == before and not any((spare / "repo" / "targets").rglob("*.raucb"))
