"""`bedside top`: the live view of a running gateway, over its control socket.

The gateway sends its snapshot (`{"cmd": "view"}`, appliance/view.py); this draws
it with the demo's renderer, once a second. Keys as in the demo: a acknowledges
all alarms, p pauses audio, q quits; each is confirmed by a line under the view.
A gateway that cannot be reached is said on screen and retried (it may be
restarting); `--once` prints one frame and exits 1 if the gateway is not there.
Pure client: nothing here touches the gateway's state except through the socket.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from appliance.cli_tools import control_path
from appliance.control import ControlError, request
from appliance.core.errors import EXIT_ERROR, EXIT_OK
from appliance.view import KEYS
from appliance.view_text import to_text

__all__ = ["Operator", "cmd_top"]

CLEAR = "\x1b[H\x1b[2J"


class Operator:
    """Keys -> control socket requests, each confirmed in words."""

    def __init__(self, send: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.send = send
        self.notice = ""
        self.quit = False

    def press(self, key: bytes) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        key = key.lower()
        try:
            if key == b"a":
                self.send({"cmd": "ack"})
                self.notice = f"{stamp}  acknowledged: all alarms"
            elif key == b"p":
                self.send({"cmd": "pause"})
                self.notice = f"{stamp}  audio paused (the visual signal stays)"
            elif key == b"q":
                self.quit = True
            elif key.strip():
                self.notice = f"{stamp}  key {key.decode(errors='replace')!r} does nothing: a, p or q"
        except ControlError as exc:
            self.notice = f"{stamp}  NOT DONE: {exc}"


def _frame(path: str, operator: Operator | None, color: bool) -> tuple[str, bool]:
    width = shutil.get_terminal_size((120, 40)).columns
    try:
        snap: Any = request(path, {"cmd": "view"}).get("view")
    except ControlError as exc:
        return f"bedside top: {exc} (retrying)\n", False
    keys = KEYS if operator else ""
    try:
        return to_text(snap, color=color, width=width, keys=keys, notice=operator.notice if operator else ""), True
    except (TypeError, KeyError, AttributeError, ValueError) as exc:  # a reply not shaped like a view
        return f"bedside top: {path}: the gateway's view cannot be drawn ({type(exc).__name__}: {exc})\n", False


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_top(args: argparse.Namespace) -> int:
    path = control_path(args)
    if args.once:
        text, ok = _frame(path, None, color=False)
        sys.stdout.write(text)
        return EXIT_OK if ok else EXIT_ERROR
    interactive = sys.stdin.isatty()
    operator = Operator(lambda payload: request(path, payload))
    color = sys.stdout.isatty()
    with _cbreak(sys.stdin.fileno()) if interactive else contextlib.nullcontext():
        while not operator.quit:
            text, _ = _frame(path, operator if interactive else None, color)
            sys.stdout.write((CLEAR if color else "") + text)
            sys.stdout.flush()
            deadline = time.monotonic() + max(0.2, args.interval)
            while interactive and not operator.quit and (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sys.stdin], [], [], left)
                if ready:
                    operator.press(os.read(sys.stdin.fileno(), 1))
                    break  # redraw at once: the confirmation shows with the new state
            if not interactive:
                time.sleep(max(0.2, args.interval))
    return EXIT_OK
