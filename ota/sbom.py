"""The image's software bill of materials: CycloneDX 1.6 JSON, written by image/build.

It is made from the root file system the build is about to squash, so it lists exactly
what ships: every installed Debian package (name, version, architecture, source package)
from the root's dpkg status, and every Python distribution in the gateway's virtualenv
(name, version, licence) from its metadata. The document is checked against the CycloneDX
schema before it is written: an SBOM that does not validate fails the build. The build
signs it with the image (the image's signed .sha256 file covers it).

Build-host only (`python -m ota.sbom`): the box never imports this module, so its
dependency (cyclonedx-python-lib) is not in the image's runtime set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Final

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import License
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from ota.errors import FleetError

__all__ = ["DebPackage", "SbomError", "build_sbom", "debian_packages", "main", "python_components"]

_LICENSE_CLASSIFIER: Final = "License :: "
_MAX_LICENSE_FIELD: Final = 80  # longer License fields are the whole licence text, not a name


class SbomError(FleetError):
    """The SBOM cannot be made from this root (one line for the build log)."""


@dataclass(frozen=True, slots=True)
class DebPackage:
    name: str
    version: str
    arch: str
    source: str


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t":
            if key:
                fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()


def debian_packages(root: Path) -> list[DebPackage]:
    """Installed packages from ROOT/var/lib/dpkg/status (no dpkg needed on the build host)."""
    status = root / "var" / "lib" / "dpkg" / "status"
    try:
        text = status.read_text(encoding="utf-8")
    except OSError as exc:
        raise SbomError(f"{status}: {exc.strerror or exc}") from exc
    packages = []
    for fields in _stanzas(text):
        if not fields.get("Status", "").endswith(" installed") or "Package" not in fields:
            continue
        source = fields.get("Source", fields["Package"]).split(" ")[0]
        packages.append(
            DebPackage(fields["Package"], fields.get("Version", ""), fields.get("Architecture", ""), source)
        )
    if not packages:
        raise SbomError(f"{status}: no installed packages")
    return sorted(packages, key=lambda p: p.name)


def _os_release(root: Path) -> str:
    try:
        lines = (root / "etc" / "os-release").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "debian"
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    return f"debian-{values.get('VERSION_ID', '').strip(chr(34))}".rstrip("-")


def _licenses(dist: metadata.Distribution) -> list[License]:
    factory = LicenseFactory()
    meta = dist.metadata
    expression = meta.get_all("License-Expression") or []
    if expression:
        return [factory.make_from_string(expression[0])]
    field = (meta.get_all("License") or [""])[0].strip()
    if field and "\n" not in field and len(field) <= _MAX_LICENSE_FIELD and field.upper() != "UNKNOWN":
        return [factory.make_from_string(field)]
    named = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith(_LICENSE_CLASSIFIER)]
    return [factory.make_with_name(name) for name in named if name not in ("OSI Approved",)]


def python_components(site_packages: Path) -> list[Component]:
    components = []
    for dist in metadata.distributions(path=[str(site_packages)]):
        name = dist.metadata["Name"]
        version = dist.version
        purl = PackageURL(type="pypi", name=name.lower().replace("_", "-"), version=version)
        ref = f"pypi:{name}@{version}"
        licenses = _licenses(dist)
        components.append(Component(name=name, version=version, purl=purl, bom_ref=ref, licenses=licenses))
    if not components:
        raise SbomError(f"{site_packages}: no Python distributions")
    return sorted(components, key=lambda c: c.name.lower())


def _site_packages(root: Path, venv: str) -> Path:
    found = sorted((root / venv.lstrip("/")).glob("lib/python3*/site-packages"))
    if not found:
        raise SbomError(f"{root / venv.lstrip('/')}: no lib/python3*/site-packages")
    return found[-1]


def _deb_component(p: DebPackage, distro: str) -> Component:
    qualifiers = {"arch": p.arch, "distro": distro, "upstream": p.source}
    purl = PackageURL(type="deb", namespace="debian", name=p.name, version=p.version, qualifiers=qualifiers)
    return Component(name=p.name, version=p.version, bom_ref=f"deb:{p.name}@{p.version}", purl=purl)


def build_sbom(root: Path, venv: str, name: str, version: str) -> str:
    """The validated CycloneDX JSON for the root file system at ROOT."""
    distro = _os_release(root)
    debs = [_deb_component(p, distro) for p in debian_packages(root)]
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    image = Component(name=name, version=version, type=ComponentType.OPERATING_SYSTEM, bom_ref=f"image:{name}")
    components = [*debs, *python_components(_site_packages(root, venv))]
    bom = Bom(metadata=BomMetaData(component=image, timestamp=stamp), components=components)
    bom.register_dependency(image, components)  # the image ships every one of them
    text = JsonV1Dot6(bom).output_as_string(indent=1)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"the SBOM does not validate against CycloneDX 1.6: {error}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ota.sbom", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the image's root file system (a directory)")
    parser.add_argument("--venv", default="/opt/bedside/venv", help="the gateway's virtualenv inside the root")
    parser.add_argument("--name", required=True, help="the image's name, e.g. bedside-amd64")
    parser.add_argument("--version", required=True, help="the image's release version")
    parser.add_argument("--out", type=Path, required=True, help="where to write the CycloneDX JSON")
    args = parser.parse_args(argv)
    try:
        text = build_sbom(args.root, args.venv, args.name, args.version)
        args.out.write_text(text, encoding="utf-8")
    except (SbomError, OSError) as exc:
        print(f"ota.sbom: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
