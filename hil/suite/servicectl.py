"""A stand-in for `systemctl` on a box without systemd (a development machine, the CI
test of `--target ssh://`): start, restart, stop, kill -9 and the main PID of one
command, kept in a state folder (pid file, log).

It does not supervise: systemd's `Restart=always` brings a killed gateway back by
itself, this does not; the bench starts it again after the step's `down_s` either
way (`start` does nothing while it runs, as `systemctl start` on an active unit).
Not part of the image.

    python -m hil.suite.servicectl --state DIR start|restart|stop|kill|main-pid [-- COMMAND...]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

__all__ = ["main"]

_STOP_TIMEOUT_S: Final = 15.0


def _pid(state: Path) -> int:
    try:
        pid = int((state / "pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return 0
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().rpartition(")")[2].split()[0] == "Z":
        return 0  # a zombie of ours is not running
    return pid


def _start(state: Path, command: list[str]) -> int:
    if _pid(state):
        return 0
    if not command:
        print("servicectl: start needs -- COMMAND", file=sys.stderr)
        return 2
    with (state / "log").open("ab") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )  # its own session: the ssh command that started it returns
    (state / "pid").write_text(str(proc.pid))
    return 0


def _stop(state: Path) -> int:
    pid = _pid(state)
    if not pid:
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while _pid(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid(state):
        os.kill(pid, signal.SIGKILL)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="servicectl")
    parser.add_argument("--state", required=True, help="folder for the pid file and the log")
    parser.add_argument("verb", choices=("start", "restart", "stop", "kill", "main-pid"))
    parser.add_argument("command", nargs="*", help="after --: what start runs")
    args = parser.parse_args(argv)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    if args.verb == "main-pid":
        print(_pid(state))
        return 0
    if args.verb == "kill":
        if pid := _pid(state):
            os.kill(pid, signal.SIGKILL)
        return 0
    if args.verb in ("stop", "restart"):
        _stop(state)
    return _start(state, args.command) if args.verb != "stop" else 0


if __name__ == "__main__":
    sys.exit(main())
