"""The gateway's virtualenv in the image, filled from the build host (image/build).

The arm64 root's python3 runs under qemu-user on the build host, where pip in the
image's root spent minutes resolving, unpacking and byte-compiling (and ensurepip
installed pip itself, which the read-only box never uses). Unpacking a wheel needs no
interpreter of the target: this module creates the venv with the image's python3
(`--without-pip`: only its layout and pyvenv.cfg), installs the wheels image/build
fetched with pypa's `installer` (console scripts run the venv's own python3; RECORD and
INSTALLER written as pip writes them), and leaves only byte-compiling to the image's
python3, because .pyc files are specific to the interpreter's version.

Which wheels are installed is decided here, not by what was downloaded: `pip download`
evaluates requirement markers for the build host's Python (3.11 here), so it also fetches
backports the image's Python does not need. Starting from the requirement given, each
distribution's Requires-Dist markers are evaluated in the image's Python environment,
probed from the image's own python3.

Each selected wheel must also fit the image's interpreter, as pip would have chosen it:
one of its file name's tags among those the image's python3 installs (`ota.wheel_tags`,
from the probe and the image's glibc version) and its Requires-Python. A wheel for the
build host's Python or architecture, or for a newer glibc (a stale download, a wheel
built here) is refused by name at build time instead of failing to import on the box.

Build-host only (`python -m ota.wheels`); the box never imports it.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from installer import install as install_wheel
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from ota.errors import FleetError
from ota.wheel_tags import parse_glibc, python_release, supported_tags

__all__ = [
    "ENV_PROBE", "LIBC_PROBE", "Wheel", "WheelError", "install", "main", "read_wheels", "select",
    "target_environment", "target_glibc",
]  # fmt: skip

# The marker variables of PEP 508, as the target interpreter sees itself (what
# packaging.markers.default_environment computes, without needing packaging there).
ENV_PROBE: Final = """
import json, os, platform, sys
i = sys.implementation
v = "%d.%d.%d" % i.version[:3]
if i.version.releaselevel != "final":
    v += i.version.releaselevel[0] + str(i.version.serial)
print(json.dumps({
    "implementation_name": i.name, "implementation_version": v, "os_name": os.name,
    "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}))
"""
LIBC_PROBE: Final = "import platform; print(*platform.libc_ver())"  # "glibc 2.41"
_INSTALLER: Final = b"bedside-image-build\n"  # dist-info/INSTALLER: who put it there


class WheelError(FleetError):
    """The venv cannot be filled from these wheels (one line for the build log)."""


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical (PEP 503)
    version: Version
    requires: tuple[Requirement, ...]
    tags: frozenset[Tag]  # from the file name: what interpreters and platforms it is for
    requires_python: str  # as METADATA says it (checked when the wheel is selected)


Runner = Callable[[Sequence[str]], str]  # runs a command in the target, returns its stdout


def read_wheels(folder: Path) -> dict[str, Wheel]:
    """Every wheel in `folder`, by canonical distribution name, with its Requires-Dist."""
    wheels: dict[str, Wheel] = {}
    for path in sorted(folder.glob("*.whl")):
        try:
            with WheelFile.open(path) as source:
                meta = email.parser.HeaderParser().parsestr(source.read_dist_info("METADATA"))
            if not meta["Name"] or not meta["Version"]:
                raise ValueError("METADATA names no Name or Version")
            name = canonicalize_name(meta["Name"])
            version = Version(meta["Version"])
            requires = tuple(Requirement(line) for line in meta.get_all("Requires-Dist") or ())
            requires_python = str(meta["Requires-Python"] or "")
            tags = parse_wheel_filename(path.name)[3]
        except (
            OSError, ValueError, KeyError, zipfile.BadZipFile, InvalidRequirement, InvalidVersion, InvalidWheelFilename,
        ) as exc:  # fmt: skip
            raise WheelError(f"{path.name}: not a readable wheel ({exc})") from None
        if name in wheels:
            raise WheelError(f"two wheels for {name}: {wheels[name].path.name} and {path.name}")
        wheels[name] = Wheel(path, name, version, requires, tags, requires_python)
    return wheels


def select(
    wheels: Mapping[str, Wheel], requirement: str, environment: Mapping[str, str], glibc: tuple[int, int] | None
) -> list[Wheel]:
    """The closure of `requirement` over `wheels`, markers evaluated in `environment`
    (the target's), each version checked against every specifier that asked for it and
    each wheel against what the target installs (`glibc`: its C library's version)."""
    supported = supported_tags(environment, glibc)
    chosen: dict[str, Wheel] = {}
    expanded: set[tuple[str, frozenset[str]]] = set()  # requirement cycles end here
    try:
        pending: list[tuple[Requirement, str]] = [(Requirement(requirement), "the command line")]
    except InvalidRequirement as exc:
        raise WheelError(f"not a requirement: {requirement!r} ({exc})") from None
    while pending:
        req, wanted_by = pending.pop()
        name = canonicalize_name(req.name)
        wheel = wheels.get(name)
        if wheel is None:
            raise WheelError(f"{name} (required by {wanted_by}) has no wheel among those fetched")
        if not req.specifier.contains(wheel.version, prereleases=True):
            raise WheelError(f"{wanted_by} requires {req}, the wheel is {name} {wheel.version}")
        _check_fits(wheel, environment, supported)
        extras = frozenset({""} | {canonicalize_name(extra) for extra in req.extras})
        chosen[name] = wheel
        if (name, extras) in expanded:
            continue
        expanded.add((name, extras))
        for dep in wheel.requires:
            if dep.marker is None or any(_applies(dep.marker, environment, extra) for extra in extras):
                pending.append((dep, f"{name} {wheel.version}"))
    return [chosen[name] for name in sorted(chosen)]


def _check_fits(wheel: Wheel, environment: Mapping[str, str], supported: frozenset[Tag]) -> None:
    """Raise unless the target interpreter could install `wheel` (tags, Requires-Python)."""
    python = python_release(environment)
    try:
        fits = SpecifierSet(wheel.requires_python).contains(python, prereleases=True)
    except InvalidSpecifier:
        fits = True  # pip, too, ignores a Requires-Python it cannot read
    if not fits:
        raise WheelError(f"{wheel.path.name} requires Python {wheel.requires_python}; the image's is {python}")
    if not wheel.tags & supported:
        env = environment
        target = f"{env['implementation_name']} {env['python_version']} on {env['platform_machine']}"
        raise WheelError(f"{wheel.path.name} is built for {', '.join(sorted(map(str, wheel.tags)))}, not {target}")


def _applies(marker: Marker, environment: Mapping[str, str], extra: str) -> bool:
    return marker.evaluate({**environment, "extra": extra})


def target_environment(run: Runner) -> dict[str, str]:
    """The target interpreter's marker environment (ENV_PROBE run by `run`)."""
    try:
        found = json.loads(run(["-c", ENV_PROBE]))
    except (json.JSONDecodeError, subprocess.CalledProcessError) as exc:
        detail = (getattr(exc, "stderr", None) or "").strip()[-300:]
        raise WheelError(f"cannot probe the image's python3: {exc} {detail}".strip()) from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise WheelError(f"the image's python3 answered the probe with {found!r}")
    return found


def install(selected: Sequence[Wheel], root: Path, venv: PurePosixPath, python_version: str) -> None:
    """Unpack `selected` into `venv` (a path on the target) under `root`, no byte-code."""
    site = str(venv / "lib" / f"python{python_version}" / "site-packages")
    for wheel in selected:
        scheme = {"purelib": site, "platlib": site, "scripts": str(venv / "bin"), "data": str(venv),
                  "headers": str(venv / "include" / "site" / f"python{python_version}" / wheel.name)}  # fmt: skip
        destination = SchemeDictionaryDestination(
            scheme, interpreter=str(venv / "bin" / "python3"), script_kind="posix", destdir=str(root)
        )
        with WheelFile.open(wheel.path) as source:
            install_wheel(source, destination, {"INSTALLER": _INSTALLER})


def target_glibc(run: Runner) -> tuple[int, int] | None:
    """The target's glibc version (LIBC_PROBE run by `run`); None for another C library."""
    try:
        return parse_glibc(run(["-c", LIBC_PROBE]))
    except subprocess.CalledProcessError as exc:
        raise WheelError(f"cannot probe the image's C library: {(exc.stderr or '').strip()[-300:]}") from None


def _image_python(root: Path, *args: str) -> list[str]:
    """The command line that runs the image's own python3 inside its root."""
    return ["chroot", str(root), "python3", *args]


def _chroot_runner(root: Path) -> Runner:
    def run(args: Sequence[str]) -> str:
        return subprocess.run(_image_python(root, *args), capture_output=True, text=True, check=True).stdout

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ota.wheels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the image's root file system")
    parser.add_argument("--venv", type=PurePosixPath, required=True, help="the venv's path inside the root")
    parser.add_argument("--wheels", type=Path, required=True, help="folder of the wheels fetched for the image")
    parser.add_argument("requirement", help="what to install, e.g. bedside-gateway")
    args = parser.parse_args(argv)
    run = _chroot_runner(args.root)
    try:
        environment = target_environment(run)
        selected = select(read_wheels(args.wheels), args.requirement, environment, target_glibc(run))
        subprocess.run(_image_python(args.root, "-m", "venv", "--without-pip", str(args.venv)), check=True)
        install(selected, args.root, args.venv, environment["python_version"])
        # compileall's workers run in parallel; under qemu-user this is the slow part. As
        # pip does, a file that does not compile (a template, a file for another Python)
        # is left as it is: it is reported, the build goes on.
        site = args.venv / "lib" / f"python{environment['python_version']}" / "site-packages"
        compiled = subprocess.run(_image_python(args.root, "-m", "compileall", "-q", "-j", "0", str(site)),
                                  capture_output=True, text=True, check=False)  # fmt: skip
        if compiled.returncode != 0:
            print(f"ota.wheels: warning: some files were not byte-compiled: {compiled.stdout.strip()[-500:]}",
                  file=sys.stderr)  # fmt: skip
    except WheelError as exc:
        print(f"ota.wheels: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()[-500:]
        print(f"ota.wheels: {' '.join(map(str, exc.cmd[:5]))} failed: {detail}", file=sys.stderr)
        return 1
    except (OSError, ValueError, InstallerError) as exc:  # a file two wheels ship, a corrupt wheel, no chroot
        print(f"ota.wheels: cannot install into {args.root}{args.venv}: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{w.name}=={w.version}" for w in selected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
