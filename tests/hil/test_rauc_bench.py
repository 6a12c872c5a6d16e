"""The bench's bundles are the image's: verity by default, and a RAUC configured as the
image is (bundle-formats=-plain) refuses the plain ones the bench used to build."""

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from hil.rauc_bench import RaucSystem, build_bundle
from ota.pki import make_signing_pki

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_the_image_refuses_plain_bundles_and_the_bench_builds_verity(tmp_path):
    for arch in ("amd64", "arm64"):  # the image's own RAUC configuration
        conf = (REPO / "image" / f"files-{arch}" / "etc" / "rauc" / "system.conf").read_text()
        assert "bundle-formats=-plain" in conf
    make_signing_pki(tmp_path / "pki", "t")
    pki = tmp_path / "pki"

    def bundle(fmt: str) -> Path:
        return build_bundle(tmp_path / f"{fmt}.raucb", compatible="t", version="1.1.0", cert=pki / "signing.pem",
                            key=pki / "signing.key", keyring=pki / "ca.pem", bundle_format=fmt)  # fmt: skip

    made = {fmt: bundle(fmt) for fmt in ("verity", "plain")}
    info = subprocess.run(["rauc", "info", f"--keyring={pki / 'ca.pem'}", str(made["verity"])], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert re.search(r"^Bundle Format:\s+verity$", info.stdout, re.M)  # RAUC 1.8 and 1.13 align differently
    rauc = RaucSystem(tmp_path / "rauc", "t", pki / "ca.pem", bundle_format="verity")  # as the image's system.conf
    rauc.setup()
    try:
        res = subprocess.run(["rauc", "install", str(made["plain"])], env=rauc.env(), capture_output=True, text=True,
                             check=False)  # fmt: skip
        assert res.returncode != 0
        assert "Bundle format 'plain' not allowed" in res.stdout + res.stderr  # RAUC's own reason
        assert rauc.slot_release("B") == ""
    finally:
        rauc.teardown()


def test_a_given_slot_image_ships_as_rootfs_img_like_image_build(tmp_path):
    make_signing_pki(tmp_path / "pki", "t")
    pki = tmp_path / "pki"
    image = tmp_path / "rootfs.sqfs"
    image.write_bytes(os.urandom(256 * 1024))
    bundle = build_bundle(tmp_path / "b.raucb", compatible="t", version="1.2.0", cert=pki / "signing.pem",
                          key=pki / "signing.key", keyring=pki / "ca.pem", image=image)  # fmt: skip
    info = subprocess.run(["rauc", "info", f"--keyring={pki / 'ca.pem'}", "--output-format=json", str(bundle)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (entry,) = json.loads(info.stdout)["images"]
    assert entry["rootfs"]["filename"] == "rootfs.img"  # .img: RAUC's raw handler, as image/build ships it
    assert entry["rootfs"]["checksum"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert not list(tmp_path.glob(".b.raucb.d"))  # the work directory is gone
