"""ota.sbom on a small root: what dpkg says is installed and what the virtualenv holds,
each with its version (and licence for Python), in a document CycloneDX's schema accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ota.sbom import SbomError, build_sbom, debian_packages, main

STATUS = """Package: rauc
Status: install ok installed
Architecture: amd64
Version: 1.8-2
Description: update controller
 a second line

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl (3.0.17-1~deb12u2)
Version: 3.0.17-1~deb12u2

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""


def _dist(site: Path, name: str, version: str, *headers: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    meta = ["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *headers]
    (info / "METADATA").write_text("\n".join(meta) + "\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(STATUS)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    site = tmp_path / "opt/bedside/venv/lib/python3.11/site-packages"
    _dist(site, "paho_mqtt", "2.1.0", "License-Expression: EPL-2.0 OR BSD-3-Clause")
    _dist(site, "pyserial", "3.5", "License: BSD", "Classifier: License :: OSI Approved :: BSD License")
    _dist(site, "oldpkg", "0.1", "License: UNKNOWN", "Classifier: License :: OSI Approved :: MIT License")
    return tmp_path


def test_installed_packages_only_with_their_source(root: Path) -> None:
    packages = debian_packages(root)
    assert [(p.name, p.version, p.source) for p in packages] == [
        ("libssl3", "3.0.17-1~deb12u2", "openssl"),
        ("rauc", "1.8-2", "rauc"),
    ]


def test_sbom_lists_debs_and_python_with_licences(root: Path) -> None:
    bom = json.loads(build_sbom(root, "/opt/bedside/venv", "bedside-amd64", "1.2.3"))
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert bom["metadata"]["component"] == {**bom["metadata"]["component"], "name": "bedside-amd64", "version": "1.2.3"}
    purls = sorted(c["purl"] for c in bom["components"])
    assert purls == [
        "pkg:deb/debian/libssl3@3.0.17-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl",
        "pkg:deb/debian/rauc@1.8-2?arch=amd64&distro=debian-12&upstream=rauc",
        "pkg:pypi/oldpkg@0.1",
        "pkg:pypi/paho-mqtt@2.1.0",
        "pkg:pypi/pyserial@3.5",
    ]
    licences = {c["name"]: c.get("licenses") for c in bom["components"] if c["purl"].startswith("pkg:pypi/")}
    assert licences["paho_mqtt"] == [{"expression": "EPL-2.0 OR BSD-3-Clause"}]
    assert licences["pyserial"] == [{"license": {"name": "BSD"}}]  # not an SPDX id: kept as its name
    assert licences["oldpkg"] == [{"license": {"name": "MIT License"}}]  # from the classifier
    # The image depends on every component: the dependency graph is complete.
    (deps,) = [d for d in bom["dependencies"] if d["ref"] == "image:bedside-amd64"]
    assert len(deps["dependsOn"]) == len(purls)


def test_a_root_without_dpkg_status_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SbomError):
        debian_packages(tmp_path)
    code = main(["--root", str(tmp_path), "--name", "x", "--version", "1", "--out", str(tmp_path / "bom.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "var/lib/dpkg/status" in err
    assert not (tmp_path / "bom.json").exists()


def test_a_root_without_the_virtualenv_is_refused(root: Path) -> None:
    with pytest.raises(SbomError, match="site-packages"):
        build_sbom(root, "/opt/other/venv", "bedside-amd64", "1")
