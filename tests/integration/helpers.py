"""Helpers for tests that run `bedside` as real processes."""

import asyncio
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


async def until(predicate, timeout_s=15.0):
    """Await a condition in an async test; fails with TimeoutError after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


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


def gateway_toml(
    tmp: Path,
    bed_id: str,
    *,
    sink: bool = True,
    queue: bool = False,
    sections: str = "",
    device: tuple[str, str, str] | None = None,
) -> str:
    """A gateway config for tests: files under `tmp`, optional sink/queue, extra
    sections, and one device (id, protocol, port name) that reconnects quickly."""
    parts = [f'[gateway]\nbed_id = "{bed_id}"\nregistry_path = "{tmp / "registry.json"}"\n']
    if sink:
        parts.append(f'[sink]\njsonl_path = "{tmp / "records.jsonl"}"\n')
    if queue:
        parts.append(
            f'[queue]\npath = "{tmp / "store.db"}"\nkey_path = "{tmp / "store.key"}"\ncommit_interval_ms = 50\n'
        )
    parts.append(sections)
    if device is not None:
        dev_id, protocol, port = device
        parts.append(
            f'[[devices]]\nid = "{dev_id}"\nprotocol = "{protocol}"\nport = "{tmp / port}"\n'
            "reopen_min_s = 0.1\nreopen_max_s = 0.5\n"
        )
    return "".join(parts)
