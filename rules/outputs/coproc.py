"""Alarm output to the independent alarm co-processor (a Pico beside the box, docs/coproc.md).

The co-processor sounds the alarm-system-failure pattern on its own buzzer when
heartbeats stop. The heartbeats are sent by this output's task on the gateway's
event loop -- the loop that runs the alarm path -- so a blocked or stopped loop
stops them. Each heartbeat carries the annunciation's audible and visual
priorities (played by the co-processor too with `coproc_mirror`).

`annunciate()` only records the priorities and writes one frame without blocking
(a full line drops the frame, counted). A co-processor that does not answer, or
answers with another firmware version, is reported as an `output_failure`
technical event from device `coproc` (active while it lasts); when it reports
that it sounded (`recovered`), the gateway -- beating again -- acknowledges.
At start, a co-processor with another version than the shipped firmware
(`coproc_firmware_dir`) is updated over its raw REPL (rules/outputs/coproc_flash.py)
in a thread before the heartbeats begin.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import serial

from appliance.core.model import AlarmEvent, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from rules.engine import Annunciation
from rules.outputs.base import OutputError
from rules.outputs.coproc_flash import LEAVE_REPL, FlashError, firmware_files, flash, shipped_version
from rules.outputs.coproc_settings import CoprocSettings
from rules.outputs.coproc_wire import MAX_FRAME, Reply, Status, frame, parse_reply, priority_letter

__all__ = ["DEVICE_ID", "CoprocOutput"]

log = logging.getLogger(__name__)
DEVICE_ID = "coproc"
REOPEN_S = 2.0  # a port that cannot be opened is tried again this often
RESTART_S = 15.0  # an updated co-processor must answer within this after its soft reset


class CoprocOutput:
    name = "coproc"

    def __init__(self, settings: CoprocSettings, report: Callable[[TechnicalEvent], None] | None = None) -> None:
        self.settings = settings
        self.report = report or (lambda event: None)
        fw = settings.coproc_firmware_dir
        self.expected = shipped_version(Path(fw)) if fw else settings.coproc_version
        self.session = secrets.token_hex(4)
        self.seq = 0
        self.audible = self.visual = "-"
        self.status: Status | None = None
        self.version = ""
        self.flashed = 0
        self.dropped = 0  # frames a full line could not take
        self.heartbeats = 0
        self.tested = False  # the co-processor answered TEST,OK (its outputs blipped)
        self._fd: int | None = None
        self._serial: serial.Serial | None = None
        self._buf = b""
        self._last_reply = time.monotonic()
        self._problem = ""  # the active output_failure's detail, "" = none
        self._recovering = False  # LEAVE_REPL sent for this silence; the next one is a failure

    # -- the alarm path: record and write, never wait ------------------------------
    def annunciate(self, annunciation: Annunciation) -> None:
        self.audible = priority_letter(annunciation.audible)
        self.visual = priority_letter(annunciation.visual)
        self.heartbeat()

    def event(self, event: AlarmEvent) -> None:
        return None

    def self_test(self) -> None:
        if not self.settings.coproc_port:
            raise OutputError("coproc: no port configured")

    def heartbeat(self) -> None:
        self._send("HB", self.audible, self.visual)
        self.heartbeats += 1

    def _send(self, command: str, *args: str) -> None:
        if self._fd is None:
            return
        self.seq += 1
        self._write(frame(self.session, self.seq, command, *args))

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            return
        try:
            if os.write(self._fd, data) != len(data):
                self.dropped += 1  # a partial frame fails its CRC on the other side
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:
            self._lost(f"write failed: {exc.strerror}")

    # -- reporting ------------------------------------------------------------------
    def _set_problem(self, detail: str) -> None:
        if detail == self._problem:
            return
        if detail:
            log.error("alarm co-processor: %s", detail)
        else:
            log.info("alarm co-processor on %s answers (firmware %s)", self.settings.coproc_port, self.version)
        active = bool(detail)
        shown = detail or self._problem
        self._problem = detail
        self.report(TechnicalEvent(DEVICE_ID, TechnicalKind.OUTPUT_FAILURE, active=active, detail=f"coproc: {shown}"))

    def _lost(self, why: str) -> None:
        self._close()
        self._set_problem(f"{self.settings.coproc_port}: {why}")

    # -- replies --------------------------------------------------------------------
    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(f"read failed: {exc.strerror}")
            return
        self._buf += data
        while (end := self._buf.find(b"\n")) >= 0:
            line, self._buf = self._buf[:end], self._buf[end + 1 :]
            reply = parse_reply(line)
            if reply is not None and reply.session == self.session:
                self._on_reply(reply)
        if len(self._buf) > MAX_FRAME:
            self._buf = b""  # noise without newlines: drop it

    def _on_reply(self, reply: Reply) -> None:
        self._last_reply = time.monotonic()
        self._recovering = False
        if reply.kind == "VER" and reply.args:
            self.version = reply.args[0]
        if reply.kind == "TEST" and reply.args == ("OK",):
            self.tested = True
        status = Status.of(reply)
        if status is not None:
            if status.state == "recovered":
                log.warning("alarm co-processor sounded alarm-system-failure (%d times since its start)",
                            status.failures)  # fmt: skip
                self._send("ACK")
            self.status = status
        if self.version and self.version != self.expected:
            self._set_problem(f"firmware {self.version}, expected {self.expected}")
        elif self.version:
            self._set_problem("")

    # -- the task -------------------------------------------------------------------
    def _open(self) -> None:
        s = self.settings
        ser = serial.Serial(s.coproc_port, s.coproc_baud, timeout=0, write_timeout=0, exclusive=True)
        self._serial, self._fd = ser, ser.fileno()
        self._buf = b""
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _close(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
        if self._serial is not None:
            self._serial.close()
        self._serial = self._fd = None

    def _hello(self) -> None:
        self.session = secrets.token_hex(4)  # a fresh session: the board may have restarted
        self.version = ""
        self._send("HELLO")
        self._send("VER")
        self._send("MIRROR", "1" if self.settings.coproc_mirror else "0")
        if not self.tested:
            self._send("TEST")  # the first time: a blip the installer sees and hears

    async def run(self) -> None:
        if self.settings.coproc_firmware_dir:
            await asyncio.to_thread(self.update_firmware)
        period = self.settings.coproc_heartbeat_s
        try:
            while True:
                if self._fd is None:
                    try:
                        self._open()
                    except (serial.SerialException, OSError) as exc:
                        self._set_problem(f"{self.settings.coproc_port}: cannot open: {exc}")
                        await asyncio.sleep(REOPEN_S)
                        continue
                    self._last_reply = time.monotonic()
                    self._hello()
                silent = time.monotonic() - self._last_reply
                if silent > self.settings.coproc_answer_timeout_s:
                    self._silent()
                self.heartbeat()
                await asyncio.sleep(period)
        finally:
            self._close()

    def _silent(self) -> None:
        """No answer within the timeout: first try to bring back a board left in its REPL
        (an update cut short) and give it one more timeout; then it is a failure."""
        limit = self.settings.coproc_answer_timeout_s
        if self._recovering:
            self._set_problem(f"{self.settings.coproc_port}: no answer within {limit} s")
        else:
            self._recovering = True
            self._write(LEAVE_REPL)
            self._last_reply = time.monotonic()
        self._hello()

    # -- firmware update (a thread, before the heartbeats) ----------------------------
    def update_firmware(self) -> bool:
        """Ask the version; flash the shipped firmware if it differs. True if it flashed."""
        s = self.settings
        try:
            with serial.Serial(s.coproc_port, s.coproc_baud, timeout=0.1, exclusive=True) as ser:
                version = self._ask(ser, "VER")
                if version is None:
                    log.warning("alarm co-processor does not answer: leaving a REPL it may be in")
                    ser.write(LEAVE_REPL)
                    version = self._await_version(ser)
                if version is None:
                    raise FlashError("the co-processor does not answer")
                if version.args[:1] == (self.expected,):
                    return False
                log.warning("alarm co-processor firmware %s, shipped %s: updating", version.args[0], self.expected)
                # The firmware hands over only after a VER, and never while it sounds the
                # failure pattern (as it does after the box's reboot): beat, acknowledge
                # (this gateway is back), then ask.
                repl = self._ask(ser, "HB,-,-", "ACK", "VER", "REPL")
                if repl is None or repl.kind != "REPL" or repl.args != ("OK",):
                    why = ",".join(repl.args) if repl else "no answer"
                    raise FlashError(f"the co-processor did not hand over its REPL: {why}")
                flash(ser, firmware_files(Path(s.coproc_firmware_dir)))
                self.flashed += 1
                version = self._await_version(ser)
                log.warning("alarm co-processor updated: now %s", version.args[0] if version else "not answering")
        except (serial.SerialException, OSError, FlashError) as exc:
            log.error("alarm co-processor update failed: %s", exc)
            return False
        return True

    def _await_version(self, ser: serial.Serial) -> Reply | None:
        """The VER reply of a board that is (re)starting, waited for up to RESTART_S."""
        deadline = time.monotonic() + RESTART_S
        while (version := self._ask(ser, "VER")) is None and time.monotonic() < deadline:
            pass
        return version

    def _ask(self, ser: serial.Serial, *commands: str) -> Reply | None:
        """HELLO then each command ("HB,-,-": with its arguments) in one session; the reply
        to the last within the answer timeout."""
        ser.reset_input_buffer()
        self.session = secrets.token_hex(4)
        for command in ("HELLO", *commands):
            self.seq += 1
            ser.write(frame(self.session, self.seq, *command.split(",")))
        deadline = time.monotonic() + self.settings.coproc_answer_timeout_s
        while time.monotonic() < deadline:
            reply = parse_reply(ser.readline().rstrip(b"\n"))
            if reply is not None and reply.session == self.session and reply.seq == self.seq:
                return reply
        return None

    def close(self) -> None:
        return None
