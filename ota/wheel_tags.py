"""The wheel tags a target CPython on glibc Linux installs, computed as pip computes
them (packaging.tags) but for an interpreter other than the one running this code: the
image's python3, probed (`ota.wheels`), seen from the build host.

packaging.tags reads the running interpreter for what it is not told; here every input
is given: the Python version and implementation from the marker probe, the machine,
and the glibc version the image's python3 reports (a `manylinux_2_N` wheel needs glibc
2.N or newer; the legacy names are aliases, manylinux1 = 2.5, manylinux2010 = 2.12,
manylinux2014 = 2.17, each for the architectures it was defined for).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from packaging.tags import Tag, compatible_tags, cpython_tags

__all__ = ["linux_platforms", "parse_glibc", "python_release", "supported_tags"]

_LEGACY: Final = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_LEGACY_ARCHES: Final = {
    "manylinux2014": frozenset({"x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x"}),
    "manylinux2010": frozenset({"x86_64", "i686"}),
    "manylinux1": frozenset({"x86_64", "i686"}),
}


def linux_platforms(machine: str, glibc: tuple[int, int] | None) -> list[str]:
    """Platform tags of a Linux `machine` with `glibc` (None: not glibc), most specific first."""
    out: list[str] = []
    if glibc is not None and glibc[0] == 2:
        oldest = 5 if machine in ("x86_64", "i686") else 17  # manylinux's first glibc per architecture
        for minor in range(glibc[1], oldest - 1, -1):
            out.append(f"manylinux_2_{minor}_{machine}")
            legacy = _LEGACY.get(minor)
            if legacy and machine in _LEGACY_ARCHES[legacy]:
                out.append(f"{legacy}_{machine}")
    out.append(f"linux_{machine}")
    return out


def supported_tags(environment: Mapping[str, str], glibc: tuple[int, int] | None) -> frozenset[Tag]:
    """Every tag the target interpreter (its PEP 508 marker environment) installs."""
    major, minor = (int(x) for x in environment["python_version"].split(".")[:2])
    version = (major, minor)
    linux = environment["sys_platform"] == "linux"
    platforms = linux_platforms(environment["platform_machine"], glibc) if linux else []
    if environment["implementation_name"] != "cpython":
        return frozenset(compatible_tags(version, f"py{major}{minor}", platforms))
    # The ABI is given, not read from this interpreter's build (a debug or free-threaded
    # build host would otherwise add its own); Debian's python3 is the default build.
    own = cpython_tags(version, abis=[f"cp{major}{minor}"], platforms=platforms)
    return frozenset([*own, *compatible_tags(version, f"cp{major}{minor}", platforms)])


def parse_glibc(probe: str) -> tuple[int, int] | None:
    """`platform.libc_ver()` as the probe prints it ("glibc 2.41"); None if not glibc."""
    found = re.fullmatch(r"glibc (\d+)\.(\d+)(?:\.\d+)*", probe.strip())
    return (int(found[1]), int(found[2])) if found else None


def python_release(environment: Mapping[str, str]) -> str:
    """The release numbers of the target Python, as pip compares Requires-Python with
    them (sys.version_info[:3]: "3.13.5+" of a snapshot build and 3.13.0rc1 are 3.13.5
    and 3.13.0)."""
    found = re.match(r"\d+(?:\.\d+)*", environment["python_full_version"])
    return found[0] if found else environment["python_version"]
