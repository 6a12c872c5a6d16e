"""The release artefacts next to the image: its block map (.bmap, for bmaptool) and its
CycloneDX SBOM, both covered by the image's signed checksum file. The SBOM is checked
against what the squashfs root really holds (its dpkg status and the virtualenv's
dist-info folders), not against the build's own inputs."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from ota.sbom import _stanzas
from tests.image.conftest import Built

pytestmark = pytest.mark.integration

IMG = "bedside-amd64.img"
_DIST_INFO = re.compile(r"/opt/bedside/venv/lib/python3[.\d]*/site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_checksum_file_covers_image_bmap_and_sbom(built: Built) -> None:
    listed = {line.split()[1] for line in (built.out / f"{IMG}.sha256").read_text().splitlines()}
    assert listed == {IMG, f"{IMG}.bmap", "bedside-amd64.cdx.json"}
    check = subprocess.run(
        ["sha256sum", "-c", f"{IMG}.sha256"], cwd=built.out, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_sbom_validates_and_lists_what_the_root_holds(built: Built) -> None:
    text = (built.out / "bedside-amd64.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["metadata"]["component"]["name"] == "bedside-amd64"
    assert bom["metadata"]["component"]["version"] == "1.0.0"
    purls = [c["purl"] for c in bom["components"]]
    debs = {(c["name"], c["version"]) for c in bom["components"] if c["purl"].startswith("pkg:deb/debian/")}
    pypi = {c["name"].lower().replace("_", "-"): c for c in bom["components"] if c["purl"].startswith("pkg:pypi/")}
    assert len(debs) + len(pypi) == len(purls)

    status = subprocess.run(["unsquashfs", "-cat", str(built.out / "rootfs.sqfs"), "var/lib/dpkg/status"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    installed = {(s["Package"], s["Version"]) for s in _stanzas(status) if s.get("Status", "").endswith(" installed")}
    assert debs == installed
    names = {name for name, _ in debs}
    assert {"rauc", "systemd", "python3"} <= names and any(n.startswith("linux-image-") for n in names)

    listing = subprocess.run(["unsquashfs", "-lc", str(built.out / "rootfs.sqfs")], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    found = [m for m in map(_DIST_INFO.search, listing.splitlines()) if m]
    shipped = {m.group(1).lower().replace("_", "-"): m.group(2) for m in found}
    assert {name: c["version"] for name, c in pypi.items()} == shipped
    third_party = [c for name, c in pypi.items() if name != "bedside-gateway"]
    assert {"cryptography", "paho-mqtt", "pyserial", "bleak"} <= set(pypi), sorted(pypi)
    unlicensed = [c["name"] for c in third_party if not c.get("licenses")]
    assert not unlicensed, f"Python distributions with no licence in the SBOM: {unlicensed}"


def test_bmap_copy_reproduces_the_image_and_refuses_a_corrupt_one(built: Built, tmp_path: Path) -> None:
    image, bmap = built.out / IMG, built.out / f"{IMG}.bmap"
    copy = tmp_path / "card.img"
    flashed = subprocess.run(["bmaptool", "copy", "--bmap", str(bmap), str(image), str(copy)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert flashed.returncode == 0, flashed.stderr
    assert _sha256(copy) == _sha256(image)

    corrupt = tmp_path / "corrupt.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(corrupt)], check=True)
    with corrupt.open("r+b") as fh:  # the primary GPT header (LBA 1): always a mapped block
        fh.seek(512 + 100)
        byte = fh.read(1)
        fh.seek(512 + 100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    refused = subprocess.run(["bmaptool", "copy", "--bmap", str(bmap), str(corrupt), str(tmp_path / "c2.img")],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "checksum" in (refused.stderr + refused.stdout).lower()
