"""ota.wheels: the image's venv filled from the build host. Wheels are made here by hand
(a zip with METADATA, WHEEL, RECORD); the "target" interpreter is this test's own Python
run as a subprocess, so the marker probe is exercised for real."""

import base64
import hashlib
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pytest

from ota.wheels import WheelError, install, main, read_wheels, select, target_environment

VENV = PurePosixPath("/opt/bedside/venv")
LINUX_313 = {
    "implementation_name": "cpython", "implementation_version": "3.13.5", "os_name": "posix",
    "platform_machine": "aarch64", "platform_release": "6.12.0", "platform_system": "Linux",
    "platform_version": "#1 SMP", "python_full_version": "3.13.5", "platform_python_implementation": "CPython",
    "python_version": "3.13", "sys_platform": "linux",
}  # fmt: skip
GLIBC = (2, 41)  # trixie's


def make_wheel(
    folder: Path, name: str, version: str, requires: Sequence[str] = (), script: str = "",
    tag: str = "py3-none-any", requires_python: str = "",
) -> Path:  # fmt: skip
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        + f"Name: {name}\nVersion: {version}\n"
        + (f"Requires-Python: {requires_python}\n" if requires_python else "")
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    if script:
        files[f"{dist}.dist-info/entry_points.txt"] = f"[console_scripts]\n{script}\n"

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(text.encode())},{len(text.encode())}\n" for path, text in files.items())
    files[f"{dist}.dist-info/RECORD"] = record + f"{dist}.dist-info/RECORD,,\n"
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_in_zip, text in files.items():
            zf.writestr(name_in_zip, text)
    return path


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(folder, "gateway", "1.0", [
        "needed>=2", "linux-only; sys_platform == 'linux'", "backport; python_full_version < '3.12'",
        "extra-only; extra == 'test'", "with-extra[fast]",
    ], script="gateway = gateway:main")  # fmt: skip
    make_wheel(folder, "needed", "2.1", ["gateway"])  # a cycle back to the start
    make_wheel(folder, "linux-only", "1.0")
    make_wheel(folder, "backport", "1.0")  # what pip download fetches for the build host's 3.11
    make_wheel(folder, "extra-only", "1.0")
    make_wheel(folder, "with-extra", "1.0", ["speedup; extra == 'fast'"])
    make_wheel(folder, "speedup", "1.0")
    return folder


def test_markers_are_evaluated_for_the_image_python_not_the_build_host(wheels: Path):
    chosen = [w.name for w in select(read_wheels(wheels), "gateway", LINUX_313, GLIBC)]
    assert chosen == ["gateway", "linux-only", "needed", "speedup", "with-extra"]
    on_311 = {**LINUX_313, "python_version": "3.11", "python_full_version": "3.11.2"}
    assert "backport" in [w.name for w in select(read_wheels(wheels), "gateway", on_311, GLIBC)]


@pytest.mark.parametrize(
    ("drop", "version", "message"),
    [("needed", None, "needed (required by gateway 1.0) has no wheel"),
     (None, ("needed", "1.5"), "gateway 1.0 requires needed>=2, the wheel is needed 1.5")],
)  # fmt: skip
def test_a_missing_or_unsuitable_wheel_is_named(
    wheels: Path, drop: str | None, version: tuple[str, str] | None, message: str
):
    if drop:
        next(wheels.glob(f"{drop}-*.whl")).unlink()
    if version:
        next(wheels.glob(f"{version[0]}-*.whl")).unlink()
        make_wheel(wheels, version[0], version[1], ["gateway"])
    with pytest.raises(WheelError, match=re.escape(message)):
        select(read_wheels(wheels), "gateway", LINUX_313, GLIBC)


@pytest.mark.parametrize(
    ("tag", "requires_python", "refused"),
    [
        ("py3-none-any", "", None),
        ("py2.py3-none-any", ">=3.8", None),
        ("py38-none-any", "", None),  # an older 3.x, pure
        ("cp313-none-any", "", None),
        ("cp3-none-any", "", "is built for cp3-none-any"),  # not a tag pip installs
        ("cp313-cp313-manylinux_2_17_aarch64.manylinux2014_aarch64", "", None),
        ("cp313-cp313-manylinux_2_41_aarch64", "", None),  # as new as the image's glibc
        ("cp39-abi3-manylinux_2_28_aarch64", "", None),  # the stable ABI, built for an older 3.x
        ("cp313-none-manylinux_2_28_aarch64", "", None),
        ("cp313-cp313-linux_aarch64", "", None),
        ("py3-none-any", ">=3.8, !=3.9.*", None),
        ("py3-none-any", ">=3.6.*", None),  # unreadable: pip ignores it too
        ("cp311-cp311-manylinux_2_17_aarch64", "", "is built for cp311-cp311-manylinux_2_17_aarch64, not cpython 3.13"),
        ("cp313-cp313-manylinux_2_17_x86_64", "", "not cpython 3.13 on aarch64"),  # the build host's arch
        ("cp313-cp313-manylinux_2_42_aarch64", "", "is built for cp313-cp313-manylinux_2_42"),  # a newer glibc
        ("cp313-cp313-manylinux2010_aarch64", "", "is built for cp313-cp313-manylinux2010"),  # never for aarch64
        ("cp313-cp313-any", "", "is built for cp313-cp313-any"),
        ("cp314-abi3-manylinux_2_28_aarch64", "", "is built for cp314-abi3"),  # abi3 of a newer Python
        ("cp313-cp313t-manylinux_2_17_aarch64", "", "is built for cp313-cp313t"),  # free-threaded
        ("cp313-cp313-musllinux_1_2_aarch64", "", "is built for cp313-cp313-musllinux"),  # Debian is glibc
        ("cp313-cp313-win_arm64", "", "is built for cp313-cp313-win_arm64"),
        ("py3-none-any", ">=3.14", "requires Python >=3.14; the image's is 3.13.5"),
    ],
)
def test_a_wheel_the_image_python_cannot_install_is_refused_by_name(
    wheels: Path, tag: str, requires_python: str, refused: str | None
):
    next(wheels.glob("needed-*.whl")).unlink()
    make_wheel(wheels, "needed", "2.1", ["gateway"], tag=tag, requires_python=requires_python)
    if refused is None:
        assert "needed" in [w.name for w in select(read_wheels(wheels), "gateway", LINUX_313, GLIBC)]
        return
    with pytest.raises(WheelError, match=re.escape(refused)):
        select(read_wheels(wheels), "gateway", LINUX_313, GLIBC)


def test_a_snapshot_or_release_candidate_python_is_compared_by_its_release_numbers(wheels: Path):
    next(wheels.glob("needed-*.whl")).unlink()
    make_wheel(wheels, "needed", "2.1", ["gateway"], requires_python=">=3.13")
    for full in ("3.13.5+", "3.13.0rc1"):  # as pip compares sys.version_info[:3]
        env = {**LINUX_313, "python_full_version": full}
        assert "needed" in [w.name for w in select(read_wheels(wheels), "gateway", env, GLIBC)]


def test_the_tags_computed_for_a_target_are_what_packaging_gives_this_interpreter():
    # The target's tags are computed from the probe, not from the running interpreter:
    # for the running one they must be exactly packaging's (pip's) own list.
    import platform

    from packaging.markers import default_environment
    from packaging.tags import sys_tags

    from ota.wheel_tags import parse_glibc, supported_tags

    glibc = parse_glibc(" ".join(platform.libc_ver()))
    assert glibc is not None and glibc >= (2, 17)
    assert supported_tags({k: str(v) for k, v in default_environment().items()}, glibc) == set(sys_tags())


def test_a_broken_wheel_is_named(tmp_path: Path):
    (tmp_path / "junk-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(WheelError, match=re.escape("junk-1.0-py3-none-any.whl: not a readable wheel")):
        read_wheels(tmp_path)
    (tmp_path / "junk-1.0-py3-none-any.whl").unlink()
    with zipfile.ZipFile(tmp_path / "nameless-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("nameless-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nVersion: 1.0\n")
    with pytest.raises(WheelError, match=re.escape("nameless-1.0-py3-none-any.whl: not a readable wheel")):
        read_wheels(tmp_path)


def test_a_malformed_requirement_is_named(wheels: Path):
    with pytest.raises(WheelError, match=re.escape("not a requirement: 'gateway['")):
        select(read_wheels(wheels), "gateway[", LINUX_313, GLIBC)


def test_installed_as_the_venv_sees_them_with_scripts_on_its_python_and_no_bytecode(wheels: Path, tmp_path: Path):
    root = tmp_path / "root"
    install(select(read_wheels(wheels), "gateway", LINUX_313, GLIBC), root, VENV, "3.13")
    site = root / "opt/bedside/venv/lib/python3.13/site-packages"
    found = {d.metadata["Name"]: d for d in importlib.metadata.distributions(path=[str(site)])}
    assert sorted(found) == ["gateway", "linux-only", "needed", "speedup", "with-extra"]
    assert found["gateway"].read_text("INSTALLER") == "bedside-image-build\n"
    record = found["gateway"].read_text("RECORD") or ""
    assert "gateway/__init__.py,sha256=" in record and "../../../bin/gateway," in record
    script = (root / "opt/bedside/venv/bin/gateway").read_text()
    assert script.startswith("#!/opt/bedside/venv/bin/python3\n")
    assert (root / "opt/bedside/venv/bin/gateway").stat().st_mode & 0o111
    assert not list(root.rglob("*.pyc"))


def test_the_probe_reports_this_interpreter_as_packaging_would():
    from packaging.markers import default_environment

    def run(args: Sequence[str]) -> str:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True).stdout

    assert target_environment(run) == default_environment()


def test_the_command_line_reports_a_build_problem_in_one_line(
    wheels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    next(wheels.glob("needed-*.whl")).unlink()
    # No image root here: the probe fails first, in one line, without a traceback.
    assert main(["--root", str(tmp_path / "no-root"), "--venv", str(VENV), "--wheels", str(wheels), "gateway"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ota.wheels: ") and err.count("\n") == 1 and "Traceback" not in err
