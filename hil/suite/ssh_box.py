"""A box on the bench reached over SSH: OpenSSH's own client, one master connection.

Why the system `ssh` and not a Python SSH library: a bench already has OpenSSH and
its configuration (keys, agents, jump hosts, known_hosts), the master connection
(`ControlMaster`) makes each further command cost one round trip, and OpenSSH forwards
a Unix socket (`-L local.sock:/run/bedside/control.sock`), so the gateway's control
socket is asked with the same client as on the box. No new dependency.

Host keys are checked strictly against the bench's known_hosts (`BatchMode`, no
prompt, no trust on first use): a box that is not the one the bench knows is refused.
Commands run through the remote user's shell; the caller quotes (`shlex.quote`).
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["SshBox", "SshError", "SshLogin", "parse_target", "reader"]

_CONNECT_TIMEOUT_S: Final = 10
_COMMAND_TIMEOUT_S: Final = 30.0


class SshError(RuntimeError):
    """The box cannot be reached, or a command on it failed (one line)."""


@dataclass(frozen=True, slots=True)
class SshLogin:
    host: str
    user: str = ""
    port: int = 22
    identity: str = ""  # a private key file; "" = the client's own configuration
    known_hosts: str = ""  # "" = the client's own configuration
    options: tuple[str, ...] = field(default_factory=tuple)  # further `-o` values

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def parse_target(text: str) -> tuple[str, str, int]:
    """`ssh://[user@]host[:port]` -> (user, host, port); ValueError with one line."""
    rest = text.removeprefix("ssh://")
    if rest == text or not rest or "/" in rest:
        raise ValueError(f"{text!r}: use ssh://[user@]host[:port]")
    user, _, hostport = rest.rpartition("@")
    host, sep, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    if not host or (sep and not port.isdigit()) or (port and not 0 < int(port) < 65536):
        raise ValueError(f"{text!r}: use ssh://[user@]host[:port]")
    return user, host, int(port) if port else 22


class SshBox:
    """The master connection and what runs over it."""

    def __init__(self, login: SshLogin) -> None:
        self.login = login
        self._dir = Path(tempfile.mkdtemp(prefix="bedside-ssh-"))  # short: socket paths have 107 bytes
        self.control_path = self._dir / "master"
        self._master: subprocess.Popen[bytes] | None = None
        self._forwards: list[tuple[Path, str]] = []

    def _base(self) -> list[str]:
        lg = self.login
        opts = [
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={_CONNECT_TIMEOUT_S}",
            "-o", f"ControlPath={self.control_path}", "-o", "ServerAliveInterval=5", "-p", str(lg.port),
        ]  # fmt: skip
        if lg.identity:
            opts += ["-i", lg.identity, "-o", "IdentitiesOnly=yes"]
        if lg.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={lg.known_hosts}"]
        for opt in lg.options:
            opts += ["-o", opt]
        return ["ssh", *opts]

    def connect(self) -> None:
        """The master connection (`ssh -M -N`); SshError with ssh's own line if refused."""
        cmd = [*self._base(), "-M", "-N", "-o", "ControlPersist=no", self.login.destination]
        self._master = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S + 5
        while time.monotonic() < deadline:
            if self._master.poll() is not None:
                err = self._master.stderr.read().decode(errors="replace") if self._master.stderr else ""
                self.close()
                raise SshError(f"ssh {self.login.destination}: {_last_line(err) or 'connection refused'}")
            check = subprocess.run(
                [*self._base(), "-O", "check", self.login.destination], capture_output=True, check=False
            )
            if check.returncode == 0:
                return
            time.sleep(0.1)
        self.close()
        raise SshError(f"ssh {self.login.destination}: no connection in {_CONNECT_TIMEOUT_S + 5} s")

    def run(self, command: str, stdin: bytes = b"", timeout_s: float = _COMMAND_TIMEOUT_S, check: bool = True) -> str:
        """`command` in the remote shell; its stdout. SshError (its stderr's last line)
        when it fails and `check`."""
        try:
            res = subprocess.run(
                [*self._base(), self.login.destination, command],
                input=stdin, capture_output=True, timeout=timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise SshError(f"on the box: {command!r} did not finish in {timeout_s:.0f} s") from None
        if check and res.returncode != 0:
            err = _last_line(res.stderr.decode(errors="replace"))
            raise SshError(f"on the box: {command!r} exited {res.returncode}: {err}")
        return res.stdout.decode(errors="replace")

    def write(self, path: str, data: bytes, mode: int = 0o644, owner: str = "") -> None:
        """A file on the box, written whole (a temporary name, then a rename)."""
        q, tmp = shlex.quote(path), shlex.quote(path + ".hil-new")
        chown = f" && chown {shlex.quote(owner)} {tmp}" if owner else ""
        self.run(f"umask 077 && cat > {tmp} && chmod {mode:o} {tmp}{chown} && mv -f {tmp} {q}", stdin=data)

    def stream(self, command: str) -> subprocess.Popen[bytes]:
        """A long-running remote command whose stdout the caller reads line by line."""
        return subprocess.Popen(
            [*self._base(), self.login.destination, command], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def forward_socket(self, remote: str) -> Path:
        """A local Unix socket forwarded to `remote` on the box (over the master)."""
        local = self._dir / f"fwd{len(self._forwards)}.sock"
        spec = f"{local}:{remote}"
        res = subprocess.run(
            [*self._base(), "-o", "StreamLocalBindUnlink=yes", "-O", "forward", "-L", spec, self.login.destination],
            capture_output=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise SshError(f"ssh: cannot forward {remote}: {_last_line(res.stderr.decode(errors='replace'))}")
        self._forwards.append((local, remote))
        return local

    def close(self) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                cmd = [*self._base(), "-O", "exit", self.login.destination]
                subprocess.run(cmd, capture_output=True, timeout=10, check=False)
            if self._master.poll() is None:
                self._master.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._master.wait(10)
            if self._master.stderr:
                self._master.stderr.close()
            self._master = None
        for path in self._dir.glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._dir.rmdir()


def _last_line(text: str) -> str:
    """The line that says what went wrong: the first naming an error (nft puts the
    caret lines after it), else the last (ssh's own)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "rror" in ln]
    return errors[0] if errors else (lines[-1] if lines else "")


def reader(proc: subprocess.Popen[bytes], on_line: Callable[[str], None]) -> threading.Thread:
    """A daemon thread handing each stdout line of `proc` to `on_line`."""

    def loop() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            on_line(raw.decode(errors="replace").strip())

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread
