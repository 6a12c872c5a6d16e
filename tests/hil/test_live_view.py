"""The terminal view as a person sees it: `bedside demo` on a pseudo-terminal, its
output fed to a VT100 screen (pyte), keys typed at it; then `bedside top` against
the same running gateway over its control socket. Screenshots (the screen as text)
go to build/screenshots/."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte
import pytest

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
COLS, ROWS = 150, 100


class Terminal:
    """A child process on a pty of COLS x ROWS, drawn on a pyte screen."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", *args],
            stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.raw = b""

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the child closed the pty
                return
            if not data:
                return
            self.raw += data
            self.stream.feed(data)

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, seen: Callable[[str], bool], timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.pump(0.3)
            if seen(self.text()):
                return True
        return False

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        os.close(self.master)
        return rc


def _alarm_part(text: str) -> str:
    """The screen above the Beds table (the header line says "Bedside", so split on the title line)."""
    lines = text.splitlines()
    return "\n".join(lines[: lines.index("Beds")] if "Beds" in lines else lines)


def _shot(name: str, text: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / name).write_text(text + "\n", encoding="utf-8")


def test_demo_view_keys_and_top_as_a_person_sees_them(tmp_path: Path) -> None:
    work = tmp_path / "run"
    demo = Terminal("demo", "--duration", "150", "--workdir", str(work), cwd=tmp_path)
    try:
        # First values in display units, per device, with the ventilator's own columns.
        assert demo.wait_for(lambda t: "Beds" in t and "mmHg" in t and "cmH2O" in t, 45), demo.text()
        screen = demo.text()
        assert "mm[Hg]" not in screen and "cm[H2O]" not in screen  # UCUM stays in the records
        evita = next(line for line in screen.splitlines() if "evita-1" in line)
        assert "PEEP" in evita and "FiO2" in evita
        assert "keys: a = acknowledge all alarms" in screen

        # The demo's scenarios raise alarms within a minute or so: priority spelled out, bed, source device, onset, and
        # for a monitor's own alarm the monitor's words (IntelliVue alert text), never a raw code.
        def alarm_rows(t: str) -> list[str]:
            head = _alarm_part(t)
            return [r for r in head.splitlines() if any(f" {p} " in r for p in ("HIGH", "MEDIUM", "LOW"))]

        assert demo.wait_for(lambda t: bool(alarm_rows(t)), 120), demo.text()
        for row in alarm_rows(demo.text()):
            cells = [c.strip() for c in row.split("│")[1:-1]]
            _priority, bed, device, onset, _state, text = cells
            assert bed.startswith("ICU-") and device and text, row  # bed, source device, words
            assert len(onset) == 8 and onset.count(":") == 2, row  # onset HH:MM:SS
        alarms = _alarm_part(demo.text())
        assert "Alarm reported by the device" not in alarms and "0x" not in alarms  # device words, no raw codes
        _shot("demo-alarm.txt", demo.text())
        # IEC 60601-1-8 colours on a colour terminal: high on red, medium on yellow, low on cyan.
        assert any(code in demo.raw for code in (b";41m", b";43m", b";46m"))

        demo.press("p")
        assert demo.wait_for(lambda t: "audio paused for 120 s" in t and "AUDIO PAUSED" in t, 10), demo.text()
        assert any(c in demo.text() for c in ("1:59 left", "2:00 left", "1:58 left"))
        demo.press("a")
        assert demo.wait_for(lambda t: "acknowledged: all alarms" in t, 10), demo.text()
        demo.press("x")
        assert demo.wait_for(lambda t: "key 'x' does nothing" in t, 10)
        _shot("demo-keys.txt", demo.text())

        # Technical events are grouped: one line per device and kind, with a count.
        events = demo.text().split("Technical events")[-1]
        kinds = [(line.split()[1], line.split()[2]) for line in events.splitlines()[3:] if line.startswith("│")]
        assert len(kinds) == len(set(kinds))

        # `bedside top` draws the same gateway through its control socket.
        top = Terminal("top", "--socket", str(work / "control.sock"), cwd=tmp_path)
        try:
            assert top.wait_for(lambda t: "Beds" in t and "evita-1" in t and "mmHg" in t, 20), top.text()
            top.press("a")
            assert top.wait_for(lambda t: "acknowledged: all alarms" in t, 10), top.text()
            _shot("top.txt", top.text())
            top.press("q")
            top.pump(2)
            assert top.proc.wait(10) == 0
        finally:
            top.close()
        demo.press("q")
        demo.pump(10)
        assert demo.proc.wait(30) == 0
    finally:
        demo.close()
    # It kept its records and said where.
    assert (work / "records.jsonl").stat().st_size > 0
    assert str(work) in demo.raw.decode(errors="replace").replace("\r\n", "")


def test_top_once_without_a_gateway_is_one_line_and_exit_1(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "top", "--socket", str(tmp_path / "none.sock"), "--once"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stdout.count("\n") == 1 and "cannot reach the gateway" in res.stdout and "Traceback" not in res.stderr
