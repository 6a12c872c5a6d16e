"""Build each image once per test run (amd64, arm64), signed with a fleet's RAUC PKI; the
bootstrapped roots (mmdebstrap) are cached by their inputs' hash for the run.

The builds start in the background as soon as the run's tests are known, one after the
other (amd64, then arm64), at idle CPU priority (SCHED_IDLE: they use only what the tests
leave): the arm64 build runs dpkg under qemu-user for many minutes, and on CI's 2 cores
that time overlaps the host tests instead of adding to the image tests. The arm64 tests
are moved to the end of the run so that its build has the longest head start. A fixture
waits for its image; a failed build fails the fixture with the build's output.

Idle CPU priority does not make a build invisible: its last minutes write gigabytes (the
disk image, squashfs, bundle), and a guest's fsync then waits behind that writeback (a
CI run's VM suite saw boots 2.5 times slower, the gateway's loop 4.6 s late, alarms
missed). A test whose verdict rests on the guest's timing asks for `quiet_host`
(tests/conftest.py; the benchmarks do too): it runs after the other tests (before
arm64's) and waits until no build runs beside it."""

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hil.rauc_bench import build_bundle
from ota.repo import FleetRepo, init_fleet
from tests.quiet import QUIET, QUIET_FIXTURE

REPO = Path(__file__).resolve().parents[2]
COMPATIBLE = "bedside-gw-amd64"
ARCH_FIXTURES = {"built": "amd64", "built_arm64": "arm64"}
BUILD_TIMEOUT_S = 3600  # arm64 on a busy 2-core machine, at idle priority


@dataclass(frozen=True)
class Built:
    out: Path
    fleet: FleetRepo


@dataclass
class _Job:
    arch: str
    base: Path  # fleet/ and out/
    done: threading.Event
    process: subprocess.Popen[str] | None = None
    built: Built | None = None
    failure: str = ""
    started_s: float = 0.0  # monotonic
    build_s: float = 0.0
    waited_s: float = 0.0  # how long tests waited for it


class _Builder:
    """Builds the requested images one after the other in a background thread."""

    def __init__(self, factory: pytest.TempPathFactory, archs: list[str]) -> None:
        self.cache = factory.getbasetemp() / "image-cache"  # the rootfs, by its inputs' hash, for this run
        self.jobs = {arch: _Job(arch, factory.mktemp(f"image-{arch}"), threading.Event()) for arch in archs}
        self.stopping = False
        self.quiet_waited_s = 0.0  # how long `quiet_host` tests waited for the builds to end
        self.lock = threading.Lock()  # `stopping` and starting a build: stop() never misses one
        self.thread = threading.Thread(target=self._run, name="image-builds", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for job in self.jobs.values():
            try:
                self._build(job)
            except Exception as exc:  # a fixture must never wait for a build that cannot come
                job.failure = f"image/build --arch {job.arch} could not run: {exc!r}"
            finally:
                job.done.set()

    def _build(self, job: _Job) -> None:
        init_fleet(job.base / "fleet", f"bedside-gw-{job.arch}")
        out = job.base / "out"
        with self.lock:
            if self.stopping:
                job.failure = "the test run ended before this image was built"
                return
            job.started_s = time.monotonic()
            job.process = subprocess.Popen(
                ["chrt", "--idle", "0", "ionice", "-c", "2", "-n", "7",
                 "bash", str(REPO / "image" / "build"), "--arch", job.arch, "--out", str(out),
                 "--cache", str(self.cache), "--version", "1.0.0", "--signing", str(job.base / "fleet" / "rauc")],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )  # fmt: skip
        try:
            output, _ = job.process.communicate(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill(job.process)
            output = f"image/build --arch {job.arch} did not finish in {BUILD_TIMEOUT_S} s"
        job.build_s = time.monotonic() - job.started_s
        if job.process.returncode == 0:
            job.built = Built(out, FleetRepo(job.base / "fleet"))
        else:
            job.failure = f"image/build --arch {job.arch} failed ({job.process.returncode}):\n{output[-5000:]}"

    @staticmethod
    def _kill(process: subprocess.Popen[str]) -> None:
        """The build's whole process group: TERM (mmdebstrap and the build unmount what
        they mounted), KILL if it lingers."""
        for sig, grace_s in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace_s)
                return

    def result(self, arch: str) -> Built:
        job = self.jobs[arch]
        waiting = time.monotonic()
        job.done.wait()
        job.waited_s += time.monotonic() - waiting
        assert job.built is not None, job.failure
        return job.built

    def wait_all(self) -> None:
        waiting = time.monotonic()
        for job in self.jobs.values():
            job.done.wait()
        self.quiet_waited_s += time.monotonic() - waiting

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
        for job in self.jobs.values():
            if job.process is not None and job.process.poll() is None:
                self._kill(job.process)
        self.thread.join(timeout=120)


_BUILDER = pytest.StashKey[_Builder]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """After every other hook chose and ordered the run's tests (-k, -m, --lf, --ff ...):
    only the images they use are built."""
    config, items = session.config, session.items
    wanted = {
        ARCH_FIXTURES[name] for item in items for name in getattr(item, "fixturenames", ()) if name in ARCH_FIXTURES
    }
    if not wanted or config.option.collectonly or getattr(config.option, "setupplan", False):
        return

    # arm64's tests last: its build (the long one) gets the whole run as a head start;
    # just before them, the tests that wait for a quiet host (the builds are likely done).
    # (test_image_arm64.py and test_image_hil.py: no module's tests are split by this.)
    def place(item: pytest.Item) -> int:
        names = getattr(item, "fixturenames", ())
        return 2 if "built_arm64" in names else 1 if QUIET_FIXTURE in names else 0

    items.sort(key=place)
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    builder = config.stash[_BUILDER] = _Builder(factory, [arch for arch in ("amd64", "arm64") if arch in wanted])
    config.stash[QUIET] = builder.wait_all


def pytest_sessionfinish(session: pytest.Session) -> None:
    builder = session.config.stash.get(_BUILDER, None)
    if builder is not None:
        builder.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    builder = config.stash.get(_BUILDER, None)
    if builder is None:
        return
    for job in builder.jobs.values():
        state = "built" if job.built else "not built"
        terminalreporter.write_line(
            f"image/build --arch {job.arch}: {state} in {job.build_s:.0f} s in the background; "
            f"its tests waited {job.waited_s:.0f} s for it"
        )
    if builder.quiet_waited_s:
        terminalreporter.write_line(f"tests needing a quiet host waited {builder.quiet_waited_s:.0f} s for the builds")


def _built(request: pytest.FixtureRequest, arch: str) -> Built:
    builder = request.config.stash.get(_BUILDER, None)
    assert builder is not None and arch in builder.jobs, f"no {arch} build was started for this run"
    return builder.result(arch)


@pytest.fixture(scope="session")
def built(request: pytest.FixtureRequest) -> Built:
    return _built(request, "amd64")


@pytest.fixture(scope="session")
def built_arm64(request: pytest.FixtureRequest) -> Built:
    return _built(request, "arm64")


@dataclass(frozen=True)
class DataPartition:
    root: Path  # where the disk image's data partition is mounted
    uid: int  # the image's bedside user
    gid: int


@contextlib.contextmanager
def data_partition(disk: Path, built: Built, workdir: Path) -> Iterator[DataPartition]:
    """The disk image's data partition (partition 4) mounted through a loop device, as a
    provisioning station writes it before the first boot (site config, keys)."""
    start = int(subprocess.run(["sgdisk", "-i", "4", str(disk)], capture_output=True, text=True, check=True)
                .stdout.split("First sector: ")[1].split()[0])  # fmt: skip
    passwd = subprocess.run(["unsquashfs", "-cat", str(built.out / "rootfs.sqfs"), "etc/passwd"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    uid, gid = next(line.split(":")[2:4] for line in passwd.splitlines() if line.startswith("bedside:"))
    mnt = workdir / "data"
    mnt.mkdir()
    loop = subprocess.run(["losetup", "-f", "--show", "-o", str(start * 512), str(disk)], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    subprocess.run(["mount", loop, str(mnt)], check=True)
    try:
        yield DataPartition(mnt, int(uid), int(gid))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        subprocess.run(["losetup", "-d", loop], check=True)


def own_fleet(built: Built, workdir: Path) -> FleetRepo:
    """A copy of the build's fleet (same keys: the image trusts its RAUC CA and TUF root),
    so what one test publishes is offered to no other test's box, in any order."""
    shutil.copytree(built.fleet.fleet, workdir / "fleet")
    return FleetRepo(workdir / "fleet")


def verity_bundle(
    built: Built, version: str, dest: Path, rootfs: Path | None = None, signing: Path | None = None
) -> Path:
    """The bench's bundle helper, shipping the image's squashfs (or `rootfs`) as rootfs.img."""
    rauc = signing or built.fleet.fleet / "rauc"
    return build_bundle(
        dest,
        compatible=COMPATIBLE,
        version=version,
        cert=rauc / "signing.pem",
        key=rauc / "signing.key",
        keyring=rauc / "ca.pem",
        image=rootfs or built.out / "rootfs.sqfs",
    )
