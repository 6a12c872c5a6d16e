"""The box's faults for `--target local`: a network partition and a full /data, made
with the kernel's own parts on this machine (root only).

- **Partition**: the gateway runs in a network namespace of its own, joined to this
  machine by a veth pair the bench creates (`Netns`); the bench broker listens on the
  host end, so the uplink's only way out is the pair. The fault is an nftables table
  in the gateway's namespace that drops every packet in and out (a silent partition,
  as a pulled switch port looks: no RST, no link down); the heal deletes the table.
- **Disk full**: the gateway's /data (store, store key, registry) is a 16 MiB tmpfs
  the bench mounts in the scenario's folder (`DataFs`); the fault fills it with one
  fallocate'd file, the end deletes it. The bench's own view of the local outputs
  (`alarms.jsonl`, `records.jsonl`) stays outside, as the buzzer is outside /data.

Only scenarios that use a fault get its namespace or file system; the rest run as
before. Not here: the box's own clock (CLOCK_REALTIME is not namespaced, so only a
box of its own can step it: `--target ssh://` or a VM) and power cuts (`--target vm`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from hil.broker import Broker
from hil.suite.families import SuiteDevice
from hil.suite.faults import Milestone, check_plays
from hil.suite.spec import Scenario, Suite
from hil.suite.target import LocalTarget, gateway_config

__all__ = ["HOST_IP", "LOCAL_PLAYS", "DataFs", "LocalRig", "Netns", "check_local_suite"]

LOCAL_PLAYS: Final = frozenset({"partition", "disk_full"})
# The veth pair's /30 in 10.231.0.0/16, chosen at random once per bench process (two
# benches on one machine do not meet; one bench's scenarios take turns): the broker's
# certificate is issued for the host end before the first scenario.
_NET: Final = secrets.randbelow(16384) * 4
HOST_IP: Final = f"10.231.{_NET // 256}.{_NET % 256 + 1}"
BOX_IP: Final = f"10.231.{_NET // 256}.{_NET % 256 + 2}"
DATA_FS_MIB: Final = 16  # room for a scenario's store; small enough to fill in one call
FILL_TRIES: Final = 50  # fallocates racing the gateway's writes before giving up
_TABLE: Final = "bedside_hil_partition"
_DROP: Final = f"""table inet {_TABLE} {{
  chain in {{ type filter hook input priority -300; policy drop; iif "lo" accept; }}
  chain out {{ type filter hook output priority -300; policy drop; oif "lo" accept; }}
}}
"""


def check_local_suite(suite: Suite) -> None:
    """SuiteError for a box fault `--target local` cannot play (here, or as this user)."""
    check_plays(suite, LOCAL_PLAYS | {"box_clock_step"}, "local", "use --target vm")  # power_cut
    check_plays(
        suite, LOCAL_PLAYS, "local", "the box's clock would be this machine's: CLOCK_REALTIME is not namespaced"
    )
    if os.geteuid() != 0:
        check_plays(suite, frozenset(), "local", "needs root: a network namespace, a tmpfs mount")


def _sh(*cmd: str, stdin: str | None = None) -> None:
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")


class Netns:
    """A network namespace for the gateway and a veth pair to this machine (/30)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"bedside-hil-{tag}"
        self.host_if, self.box_if = f"bh{tag}h", f"bh{tag}b"
        self.host_ip, self.box_ip = HOST_IP, BOX_IP

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> None:
        _sh("ip", "netns", "add", self.name)
        _sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.box_if, "netns", self.name)
        _sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _sh("ip", "link", "set", self.host_if, "up")
        _sh("ip", "-n", self.name, "addr", "add", f"{self.box_ip}/30", "dev", self.box_if)
        _sh("ip", "-n", self.name, "link", "set", self.box_if, "up")
        _sh("ip", "-n", self.name, "link", "set", "lo", "up")

    def drop(self) -> None:
        _sh(*self.prefix, "nft", "-f", "-", stdin=_DROP)

    def heal(self) -> None:
        _sh(*self.prefix, "nft", "delete", "table", "inet", _TABLE)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            _sh("ip", "link", "del", self.host_if)  # takes the namespace's end with it
        with contextlib.suppress(RuntimeError):
            _sh("ip", "netns", "del", self.name)


class DataFs:
    """A small tmpfs standing for the box's /data, and the file that fills it."""

    def __init__(self, path: Path, size_mib: int = DATA_FS_MIB) -> None:
        self.path = path
        self.size_mib = size_mib
        self.fill_file = path / "hil-fill"

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _sh("mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0700", "bedside-hil-data", str(self.path))

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> None:
        """Everything that is free, in one file: the next write that needs a new page
        fails with ENOSPC. The gateway writes meanwhile, and a fallocate asking for more
        than is left by the time it allocates fails whole (tmpfs gives back what it took;
        a CI run lost both disk-full scenarios to this when allocation was slow beside an
        image build). So the file is extended by what is free now, until nothing is."""
        fd = os.open(self.fill_file, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(FILL_TRIES):
                if (free := self.free_bytes()) == 0:
                    return
                try:
                    os.posix_fallocate(fd, os.fstat(fd).st_size, free)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
            if self.free_bytes():
                raise OSError(errno.ENOSPC, f"{self.path} still has room after {FILL_TRIES} fills")
        finally:
            os.close(fd)

    def free(self) -> None:
        self.fill_file.unlink(missing_ok=True)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            _sh("umount", "--lazy", str(self.path))


class LocalRig:
    """The box around `bedside run` here for one scenario: its network namespace and
    its /data, each only when a step of the scenario needs it."""

    plays = LOCAL_PLAYS

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        actions = {s.action for s in scenario.steps}
        self.netns = Netns() if "partition" in actions else None
        self.datafs = DataFs(workdir / "data") if "disk_full" in actions else None
        self.workdir = workdir
        self.scenario = scenario
        self.wiring: dict[str, str] = {}  # every device on a pty of its own

    def open(self) -> None:
        try:
            if self.netns is not None:
                self.netns.create()
            if self.datafs is not None:
                self.datafs.mount()
        except RuntimeError:
            self.close()
            raise

    def target(self, broker: Broker, sock: Path) -> LocalTarget:
        """The gateway's config is written by the runner once the bench devices exist
        (`config_for`: their addresses, an HL7 listener's port, go into it)."""
        prefix = self.netns.prefix if self.netns is not None else []
        return LocalTarget(self.workdir, "", sock, prefix)

    def config_for(self, broker: Broker, sock: Path, bench: Mapping[str, SuiteDevice]) -> str:
        sc = self.scenario
        return gateway_config(
            self.workdir, broker, sc.devices, sc.rules_path, sock, data_dir=self.data_dir, bench=bench
        )

    @property
    def broker_host(self) -> str:
        return self.netns.host_ip if self.netns is not None else "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.datafs.path if self.datafs is not None else self.workdir

    async def begin(self, action: str, offset_s: float) -> None:
        if action == "partition" and self.netns is not None:
            await asyncio.to_thread(self.netns.drop)
        elif action == "disk_full" and self.datafs is not None:
            await asyncio.to_thread(self.datafs.fill)

    async def end(self, action: str, offset_s: float, milestone: Milestone) -> None:
        if action == "partition" and self.netns is not None:
            await asyncio.to_thread(self.netns.heal)
        elif action == "disk_full" and self.datafs is not None:
            await asyncio.to_thread(self.datafs.free)

    def close(self) -> None:
        if self.datafs is not None:
            self.datafs.close()
        if self.netns is not None:
            self.netns.close()
