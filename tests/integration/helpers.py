"""Helpers for tests that run `bedside` as real processes."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest


def spawn(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def records(path: Path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(predicate, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def bench(tmp_path):
    procs: list[subprocess.Popen[bytes]] = []
    yield tmp_path, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(5)
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `bedside` to completion, capturing output."""
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, timeout=60, check=False)
