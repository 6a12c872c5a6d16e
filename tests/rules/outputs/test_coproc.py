"""The gateway's co-processor output against the real firmware on real MicroPython
(hil/mpy_host.py): heartbeats, mirroring, a missing or wrong-version co-processor
reported, and a firmware update over the raw REPL."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from appliance.core.model import TechnicalEvent
from appliance.core.vocab import Priority, TechnicalKind
from hil.mpy_host import MpyBoard
from rules.engine import Annunciation
from rules.outputs.coproc import CoprocOutput
from rules.outputs.coproc_settings import CoprocSettings
from tests.image.coproc.conftest import BUZZER, FIRMWARE, RED, Wire, pulses, wait_for

FAST = {"TIMEOUT_MS": 1000, "BOOT_GRACE_MS": 60000}


async def until(predicate, timeout_s):
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
def board():
    b = MpyBoard(FIRMWARE, config="bsc_config", overrides=FAST)
    b.wait_event("boot")
    yield b
    b.close()


def output(port: str, events: list[TechnicalEvent], **kw) -> CoprocOutput:
    settings = CoprocSettings(coproc_port=port, coproc_heartbeat_s=0.2, coproc_answer_timeout_s=0.8, **kw)
    return CoprocOutput(settings, events.append)


async def test_heartbeats_keep_it_silent_and_annunciations_are_mirrored(board):
    events: list[TechnicalEvent] = []
    out = output(board.port, events)
    task = asyncio.create_task(out.run())
    try:
        await until(lambda: out.status is not None and out.status.state == "watching", 5)
        await asyncio.sleep(2.0)  # twice the firmware's timeout
        assert board.first_on(BUZZER, time.monotonic() - 1.7) is None
        assert out.version == "1.0.0" and not [e for e in events if e.active]
        assert out.tested and board.first_on(RED, 0.0) is not None  # the first connection's self-test blip
        t0 = time.monotonic()
        out.annunciate(Annunciation(audible=Priority.HIGH, visual=Priority.HIGH, active_count=1))
        await asyncio.sleep(1.7)
        assert len(pulses(board, BUZZER, t0, t0 + 1.45)) == 5  # the high burst's first 3 + 2
        assert board.first_on(RED, t0) is not None
        out.annunciate(Annunciation())
        await asyncio.sleep(0.5)
        assert board.level(BUZZER) == 0 and board.level(RED) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_silent_coprocessor_is_an_output_failure_until_it_answers(board):
    events: list[TechnicalEvent] = []
    out = output(board.port, events)
    task = asyncio.create_task(out.run())
    try:
        await until(lambda: out.status is not None, 5)
        os.kill(board.proc.pid, signal.SIGSTOP)  # the co-processor hangs
        try:
            await until(lambda: any(e.active for e in events), 3)
        finally:
            os.kill(board.proc.pid, signal.SIGCONT)
        failure = next(e for e in events if e.active)
        assert failure.kind == TechnicalKind.OUTPUT_FAILURE and failure.device_id == "coproc"
        assert "no answer" in failure.detail
        await until(lambda: len(events) >= 2, 5)
        assert events[1].active is False and events[1].kind == TechnicalKind.OUTPUT_FAILURE
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_missing_port_is_reported(tmp_path):
    events: list[TechnicalEvent] = []
    out = output(str(tmp_path / "ttyNONE"), events)
    task = asyncio.create_task(out.run())
    try:
        await until(lambda: bool(events), 3)
        assert events[0].active and "cannot open" in events[0].detail
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_wrong_version_is_reported_when_no_firmware_is_shipped(board):
    events: list[TechnicalEvent] = []
    out = output(board.port, events, coproc_version="9.9.9")
    task = asyncio.create_task(out.run())
    try:
        await until(lambda: bool(events), 5)
        assert events[0].active and events[0].detail == "coproc: firmware 1.0.0, expected 9.9.9"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture(params=["arming", "sounding"])
def found(request):
    """A board as the gateway finds it at start: still arming, or sounding the failure
    pattern because the box rebooted (an OTA) and nothing beat for its boot grace."""
    b = MpyBoard(
        FIRMWARE, config="bsc_config", overrides={**FAST, "BOOT_GRACE_MS": 60000 if request.param == "arming" else 300}
    )
    b.wait_event("boot")
    if request.param == "sounding":
        assert wait_for(lambda: b.level(BUZZER) == 1, 3.0)
    yield b
    b.close()


async def test_another_version_is_updated_from_the_shipped_firmware_over_the_raw_repl(found, tmp_path):
    board = found
    shipped = tmp_path / "coproc"
    shutil.copytree(FIRMWARE, shipped)
    proto = shipped / "bsc_proto.py"
    proto.write_text(proto.read_text().replace('FW_VERSION = "1.0.0"', 'FW_VERSION = "1.0.1"'))
    config = shipped / "bsc_config.py"  # the test's short timeouts travel with the update
    config.write_text(config.read_text().replace("TIMEOUT_MS = 3000", "TIMEOUT_MS = 1000"))
    events: list[TechnicalEvent] = []
    out = output(board.port, events, coproc_firmware_dir=str(shipped))
    assert out.expected == "1.0.1"
    task = asyncio.create_task(out.run())
    try:
        await until(
            lambda: out.version == "1.0.1", 90
        )  # an update over the raw REPL under node: slow on a loaded CI machine
        assert out.flashed == 1
        names = [e.get("event") for e in board.events]
        assert names[:4] == ["boot", "repl", "soft_reset", "boot"], names
        assert not [e for e in events if e.active], events
        assert (Path(board.work) / "bsc_proto.py").read_text().count("1.0.0") == 1  # the host's copy: unchanged
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def left_in_its_repl(board: MpyBoard) -> None:
    """An update cut short: the board got REPL,OK, and then the gateway died."""
    wire = Wire(board)
    try:
        wire.hello()
        wire.ask("VER")
        assert wire.ask("REPL").args == ("OK",)
        board.wait_event("repl")
    finally:
        wire.ser.close()


async def test_a_board_left_in_its_repl_is_brought_back_before_it_counts_as_missing(board):
    left_in_its_repl(board)  # its own timer would reset it only after REPL_TIMEOUT_MS (60 s)
    events: list[TechnicalEvent] = []
    out = output(board.port, events)
    task = asyncio.create_task(out.run())
    try:
        await until(lambda: out.status is not None and out.status.state == "watching", 5)
        names = [e.get("event") for e in board.events]
        assert names == ["boot", "repl", "soft_reset", "boot"], names
        assert not [e for e in events if e.active], events
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_update_check_brings_back_a_board_left_in_its_repl(board):
    left_in_its_repl(board)
    out = output(board.port, [], coproc_firmware_dir=str(FIRMWARE))  # the same version: nothing to flash
    assert out.update_firmware() is False and out.flashed == 0
    names = [e.get("event") for e in board.events]
    assert names == ["boot", "repl", "soft_reset", "boot"], names
