"""The gateway under test: `bedside run` on this machine (`--target local`).

The target writes the gateway's config (the bench devices' ptys, the bench broker,
its files in the scenario's folder), starts `bedside run` as its own process, kills
it with SIGKILL and starts it again on request, asks its control socket, and reads
its CPU time and RSS from /proc. It knows nothing of scenarios.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from appliance.control import ControlError, request
from drivers.registry import family_for
from hil.bench import line_keys
from hil.broker import Broker
from hil.suite.devices import PROTOCOL
from hil.suite.families import SuiteDevice, device_keys
from hil.suite.spec import Device

__all__ = ["LocalTarget", "Sample", "Target", "TargetError"]

_READY_TIMEOUT_S: Final = 20.0
_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")


class TargetError(RuntimeError):
    """The gateway under test could not be started or reached."""


@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    cpu_s: float  # user + system time of the process so far
    rss_bytes: int


class Target(Protocol):
    """What a scenario needs of the gateway under test."""

    name: str
    starts: int

    async def start(self) -> None: ...

    def kill(self) -> None: ...

    async def stop(self) -> int | None: ...

    async def control(self, payload: dict[str, Any]) -> dict[str, Any] | None: ...

    def sample(self) -> Sample | None: ...


def socket_dir() -> Path:
    """A short folder for the control socket: a Unix socket path has at most 107
    bytes, and a report folder deep in a CI workspace can be longer than that."""
    return Path(tempfile.mkdtemp(prefix="bedside-hil-"))


def gateway_config(
    workdir: Path,
    broker: Broker,
    devices: Sequence[Device],
    rules_path: str = "",
    sock: Path | None = None,
    *,
    data_dir: Path | None = None,
    bench: Mapping[str, SuiteDevice] | None = None,
) -> str:
    """`data_dir`: the box's /data (store, its key, the registry); default `workdir`.
    `bench`: the bench's devices by id, for families whose address the bench picks
    (an HL7 listener's port, a radio address); without it, the devices are on ptys."""
    gw = broker.pki.client("gw-1")
    data = data_dir or workdir
    lines = [
        "[gateway]",
        f'bed_id = "{devices[0].bed}"',
        f'registry_path = "{data / "registry.json"}"',
        'log_level = "warning"',
        "[sink]",
        f'jsonl_path = "{workdir / "records.jsonl"}"',
        "[alarms]",
        "console = false",
        f'events_path = "{workdir / "alarms.jsonl"}"',
        f'control_socket = "{sock or workdir / "control.sock"}"',
        *([f'rules_path = "{rules_path}"'] if rules_path else []),
        "[queue]",
        f'path = "{data / "store.db"}"',
        f'key_path = "{data / "store.key"}"',
        "commit_interval_ms = 20",
        "[uplink]",
        f'host = "{broker.host}"',
        f"port = {broker.port}",
        'server_hostname = "localhost"',
        'gateway_id = "gw-1"',
        f'ca_path = "{gw.ca}"',
        f'cert_path = "{gw.cert}"',
        f'key_path = "{gw.key}"',
        "connect_timeout_s = 3.0",
        "backoff_min_s = 0.1",
        "backoff_max_s = 0.5",
    ]
    for dev in devices:
        if bench is not None:
            protocol, port, keys = device_keys(bench[dev.id], workdir)
        else:
            protocol, port = PROTOCOL[dev.family], str(workdir / dev.id)
            keys = {**line_keys(protocol, port, 9600), "reopen_min_s": 0.1, "reopen_max_s": 0.5}
        family_for(protocol)  # the registry knows it, or the suite fails here and not in the gateway
        lines += ["[[devices]]", f'id = "{dev.id}"', f'protocol = "{protocol}"', f'port = "{port}"']
        # (`!r` would apply to the whole conditional: a bool must not become the string "true")
        lines += [f"{k} = {str(v).lower()}" if isinstance(v, bool) else f"{k} = {v!r}" for k, v in keys.items()]
        lines.append(f'bed_id = "{dev.bed}"')
    return "\n".join(lines).replace("'", '"') + "\n"


class LocalTarget:
    """`bedside run --config WORKDIR/gateway.toml` as a child process."""

    name = "local"

    def __init__(
        self, workdir: Path, config_text: str, sock: Path, prefix: Sequence[str] = (), extra: Sequence[str] = ()
    ) -> None:
        """`prefix`: what the command runs under (`ip netns exec NAME` for a partition).
        `extra`: a different entry point for the same `run --config` (the BLE radio host,
        hil/suite/radio_host.py), as arguments after `-m`; () = `appliance.cli`."""
        self.prefix = list(prefix)
        self.workdir = workdir
        self.extra = tuple(extra)
        self.config = workdir / "gateway.toml"
        self.config.write_text(config_text)
        self.socket = sock
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._log = (workdir / "gateway.log").open("ab")

    async def start(self) -> None:
        entry = self.extra or ("appliance.cli",)
        cmd = [*self.prefix, sys.executable, "-m", entry[0], "run", "--config", str(self.config), *entry[1:]]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log)
        self.starts += 1
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TargetError(f"bedside run exited with {self.proc.returncode} (see {self.workdir}/gateway.log)")
            if self.socket.exists() and (await self.control({"cmd": "list"})) is not None:
                return
            await asyncio.sleep(0.05)
        raise TargetError(f"bedside run did not answer on {self.socket} in {_READY_TIMEOUT_S:.0f} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode

    async def control(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The control socket's reply; None when the gateway does not answer."""
        try:
            return await asyncio.to_thread(request, self.socket, payload, 2.0)
        except (ControlError, OSError, ValueError):
            return None

    def sample(self) -> Sample | None:
        """CPU time and RSS of the running gateway (None between a kill and its restart)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
            rss_pages = int(Path(f"/proc/{self.proc.pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return None
        # Fields after the command name: state is [0], utime [11], stime [12] (proc(5)).
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
        return Sample(time.time(), cpu, rss_pages * _PAGE)
