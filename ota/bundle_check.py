"""What `publish` checks before it signs anything: the bundle as the box's RAUC will see it.

`rauc info --keyring=<fleet RAUC CA>` verifies the bundle's signature chain and reads its
manifest without installing (verity bundles need no device mapper for this). The
release is refused, in one line, when the signature does not verify against the
fleet's CA, when the bundle's format is one the image refuses (the image's RAUC has
`bundle-formats=-plain`), or when its `compatible` or `version` differ from what the
release is published as. The box would refuse the first two only after downloading
185 MB; the third would be installed under the wrong name.

Not checked here: whether the image inside starts (that is the box's health gate).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ota.errors import FleetError

__all__ = ["BundleInfo", "check_bundle", "read_bundle"]

RAUC_INFO_TIMEOUT_S: Final = 300.0  # a large verity bundle's signature check reads it whole
_FIELD: Final = re.compile(r"^(Compatible|Version|Bundle Format):\s*'?(?P<value>[^']*)'?\s*$")


@dataclass(frozen=True, slots=True)
class BundleInfo:
    compatible: str
    version: str
    format: str  # plain | verity | crypt


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("rauc-Message")]
    return lines[-1] if lines else "rauc info failed"


def read_bundle(bundle: Path, keyring: Path, rauc: str = "rauc") -> BundleInfo:
    """The bundle's manifest, after RAUC verified its signature against `keyring`."""
    try:
        res = subprocess.run(
            [rauc, "info", f"--keyring={keyring}", str(bundle)],
            capture_output=True, text=True, timeout=RAUC_INFO_TIMEOUT_S, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise FleetError(f"{rauc}: not installed (publish verifies bundles with `rauc info`)") from None
    except subprocess.TimeoutExpired:
        raise FleetError(f"{bundle}: rauc info did not finish in {RAUC_INFO_TIMEOUT_S:g} s") from None
    if res.returncode != 0:
        raise FleetError(f"{bundle}: refused by rauc info with the fleet's keyring: {_last_error(res.stderr)}")
    found: dict[str, str] = {}
    for line in res.stdout.splitlines():
        match = _FIELD.match(line)
        if match:
            found.setdefault(match[1], match["value"])
    return BundleInfo(found.get("Compatible", ""), found.get("Version", ""), found.get("Bundle Format", "plain"))


def check_bundle(bundle: Path, keyring: Path, *, compatible: str, version: str, bundle_format: str) -> BundleInfo:
    """`read_bundle`, then refuse a format the image does not take or a manifest that
    disagrees with the command line."""
    info = read_bundle(bundle, keyring)
    if bundle_format not in ("any", info.format):
        raise FleetError(
            f"{bundle}: a {info.format} bundle; the image's RAUC accepts only {bundle_format} bundles "
            "(fleet.toml bundle_format)"
        )
    if info.compatible != compatible:
        raise FleetError(f"{bundle}: its manifest says compatible {info.compatible!r}, published as {compatible!r}")
    if info.version != version:
        raise FleetError(f"{bundle}: its manifest says version {info.version!r}, published as {version!r}")
    return info
