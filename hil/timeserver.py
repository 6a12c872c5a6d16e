"""A real NTP server that only a VM can reach: chronyd in a network namespace of its own.

The image tests boot the box under QEMU with user-mode networking. With `restrict=on`
the guest reaches nothing of the host but its forwards, and QEMU's forwards are TCP
only, so NTP (UDP) cannot pass. Here QEMU runs inside a fresh network namespace that
holds nothing but its loopback, with `restrict=off`: the guest's packets to QEMU's host
address (10.0.2.2) leave QEMU as this namespace's 127.0.0.1, where chronyd serves its
own clock (`local stratum`, `-x`: it never sets this machine's clock). Nothing else is
in the namespace, so the guest still reaches nothing else; it is deleted afterwards.

The test's own connections to QEMU's host forwards must be made inside the namespace
too: `call` runs a function on a fresh thread that has entered it (setns(2) changes the
network namespace of the calling thread only).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, TypeVar

__all__ = ["GUEST_ADDRESS", "Netns", "TimeServer", "time_server"]

T = TypeVar("T")

GUEST_ADDRESS: Final = "10.0.2.2"  # QEMU user networking's address of the host, from the guest
_CLONE_NEWNET: Final = 0x40000000


def _sh(*cmd: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")


class Netns:
    """A network namespace with only its loopback (root)."""

    def __init__(self) -> None:
        self.name = f"bedside-time-{secrets.token_hex(3)}"

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> None:
        _sh("ip", "netns", "add", self.name)
        _sh("ip", "-n", self.name, "link", "set", "lo", "up")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            _sh("ip", "netns", "del", self.name)

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` on a thread inside the namespace (its sockets belong to it); its result or error."""
        out: list[T] = []
        err: list[BaseException] = []

        def run() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {self.name}")
            finally:
                os.close(fd)
            try:
                out.append(fn())
            except BaseException as exc:  # handed to the caller's thread
                err.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join()
        if err:
            raise err[0]
        if not out:
            raise RuntimeError(f"could not enter network namespace {self.name}")
        return out[0]


class TimeServer:
    """chronyd serving its clock on 127.0.0.1:123 inside `netns`."""

    def __init__(self, netns: Netns, workdir: Path, stratum: int = 8) -> None:
        self.netns = netns
        self.dir = workdir
        self.stratum = stratum
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # this machine's time when it began serving (0: not yet)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "chrony.conf"
        # No sources: it serves its own (this machine's) clock as synchronised at `stratum`.
        # No command port or socket, no drift file: nothing of the host's chronyd is shared.
        conf.write_text(
            f"local stratum {self.stratum}\n"
            "allow all\n"
            "bindaddress 127.0.0.1\n"
            "port 123\n"
            "cmdport 0\n"
            "bindcmdaddress /\n"
            f"pidfile {self.dir / 'chronyd.pid'}\n"
        )
        log = (self.dir / "chronyd.log").open("wb")
        self.proc = subprocess.Popen(
            [*self.netns.prefix, "chronyd", "-x", "-d", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # listening once its pid file is written
            if self.proc.poll() is not None:
                raise RuntimeError(f"chronyd exited: {(self.dir / 'chronyd.log').read_text()[-500:]}")
            if (self.dir / "chronyd.pid").exists():
                self.started_at = time.time()
                return
            time.sleep(0.05)
        raise RuntimeError("chronyd did not start within 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def time_server(workdir: Path, *, started: bool = True) -> Iterator[TimeServer]:
    """A namespace with chronyd in it, both gone afterwards; run the VM with its `netns.prefix`.
    `started=False`: the caller starts the server when the story needs it (a late NTP server)."""
    netns = Netns()
    netns.create()
    server = TimeServer(netns, workdir)
    try:
        if started:
            server.start()
        yield server
    finally:
        server.stop()
        netns.close()
