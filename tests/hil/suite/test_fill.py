"""Filling the box's /data for the disk-full fault while the gateway writes to it (root:
a real tmpfs). One fallocate of the free space fails whole when a write takes some of
it first; a CI run lost both disk-full scenarios (local and ssh) to that race beside an
image build. Both fills extend their file by what is free until nothing is."""

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.suite.local_box import DataFs
from hil.suite.ssh_target import fill_command

pytestmark = pytest.mark.integration


@pytest.fixture
def datafs(tmp_path: Path) -> Iterator[DataFs]:
    fs = DataFs(tmp_path / "data", size_mib=4)
    fs.mount()
    yield fs
    fs.close()


def _writer(folder: Path, stop: threading.Event) -> threading.Thread:
    """The gateway's stand-in: a page more every millisecond until the disk is full."""

    def run() -> None:
        fd = os.open(folder / "wal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not stop.is_set():
                try:
                    os.write(fd, b"x" * 4096)
                except OSError:
                    return  # full: what the fault is for
                stop.wait(0.001)
        finally:
            os.close(fd)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_fill_whose_free_space_was_taken_first_fills_what_is_left(
    datafs: DataFs, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = datafs.free_bytes
    calls = iter([real() + 256 * 1024])  # the first look is stale: a write took 64 pages since
    monkeypatch.setattr(datafs, "free_bytes", lambda: next(calls, None) or real())
    datafs.fill()  # one fallocate of the stale amount raised ENOSPC here
    assert real() == 0


def test_the_local_fill_leaves_nothing_free_while_a_writer_races_it(datafs: DataFs) -> None:
    for _ in range(5):
        stop = threading.Event()
        writer = _writer(datafs.path, stop)
        datafs.fill()
        assert datafs.free_bytes() == 0
        stop.set()
        writer.join()
        datafs.free()
        (datafs.path / "wal").unlink()


def test_the_box_shell_fill_leaves_nothing_free_while_a_writer_races_it(datafs: DataFs) -> None:
    for _ in range(5):
        stop = threading.Event()
        writer = _writer(datafs.path, stop)
        res = subprocess.run(["sh", "-c", fill_command(str(datafs.path))], capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        st = os.statvfs(datafs.path)
        assert st.f_bavail == 0
        stop.set()
        writer.join()
        datafs.free()
        (datafs.path / "wal").unlink()
