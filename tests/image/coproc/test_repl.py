"""The REPL hand-over (an update's way in) on the real MicroPython interpreter: refused while
the failure pattern sounds and without a VER first in the session, and bounded by a one-shot
timer that resets a board whose REPL nobody completes (docs/coproc.md, "REPL")."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hil.mpy_host import MpyBoard
from rules.outputs.coproc_flash import LEAVE_REPL
from tests.image.coproc.conftest import BUZZER, Wire, pulses, start, wait_for

REPL_TIMEOUT_S = 1.0
SLACK_S = 0.5


def names(board: MpyBoard) -> list[str]:
    return [str(e.get("event")) for e in list(board.events)]


@pytest.fixture
def short() -> Iterator[tuple[MpyBoard, Wire]]:
    """Fast timeouts, and a REPL that resets the board after 1 s."""
    board, wire = start({"TIMEOUT_MS": 1000, "BOOT_GRACE_MS": 1500, "REPL_TIMEOUT_MS": int(REPL_TIMEOUT_S * 1000)})
    yield board, wire
    wire.ser.close()
    board.close()


def test_the_repl_is_refused_while_the_failure_pattern_sounds(short):
    board, wire = short
    wire.hello()
    wire.status()
    assert wait_for(lambda: board.level(BUZZER) == 1, 2.0)  # failed: sounding
    wire.ask("VER")
    refused = wire.ask("REPL")
    assert (refused.kind, refused.args) == ("REPL", ("NO", "failed"))
    assert wire.status().state == "recovered"  # beating again, not acknowledged: still sounding
    wire.ask("VER")
    refused = wire.ask("REPL")
    assert (refused.kind, refused.args) == ("REPL", ("NO", "recovered"))
    t0 = time.monotonic()
    for _ in range(5):
        time.sleep(0.3)
        assert wire.status().state == "recovered"  # the firmware still answers on its UART
    assert len(pulses(board, BUZZER, t0, t0 + 1.4)) >= 3, "the failure pattern went on"
    assert "repl" not in names(board)


def test_a_lone_hello_and_repl_pair_is_refused(short):
    board, wire = short
    wire.hello()
    assert wire.status().state == "watching"
    wire.hello()  # a fresh session (a replayed HELLO) and straight to REPL: no VER in it
    refused = wire.ask("REPL")
    assert (refused.kind, refused.args) == ("REPL", ("NO", "VER"))
    wire.ask("VER")
    wire.hello()  # a VER of an earlier session does not count
    assert wire.ask("REPL").args == ("NO", "VER")
    assert wire.status().state == "watching"
    assert "repl" not in names(board)


def test_a_repl_nobody_completes_resets_the_board_to_its_firmware(short):
    board, wire = short
    wire.hello()
    wire.ask("VER")
    assert wire.ask("REPL").args == ("OK",)
    handed = board.wait_event("repl")
    reset = board.wait_event("reset", REPL_TIMEOUT_S + 2.0)
    waited_s = (float(str(reset["t"])) - float(str(handed["t"]))) / 1000
    assert REPL_TIMEOUT_S - 0.05 <= waited_s <= REPL_TIMEOUT_S + SLACK_S, waited_s
    board.wait_event("boot", after=names(board).index("reset"))
    wire.ser.reset_input_buffer()  # the REPL's banner
    assert wire.hello().state == "arming"  # the firmware has its UART back
    # ...and, silent again, it sounds the failure pattern after its boot grace.
    assert wait_for(lambda: board.level(BUZZER) == 1, 1.5 + SLACK_S + 0.5)


def test_a_soft_reset_in_the_repl_stops_the_timer(short):
    board, wire = short
    wire.hello()
    wire.ask("VER")
    assert wire.ask("REPL").args == ("OK",)
    board.wait_event("repl")
    wire.raw(LEAVE_REPL)  # what the gateway sends to a board that does not answer
    board.wait_event("soft_reset", 2.0)
    board.wait_event("boot", after=names(board).index("soft_reset"))
    wire.ser.reset_input_buffer()  # the REPL's banner
    assert wire.hello().state == "arming"
    until = time.monotonic() + REPL_TIMEOUT_S + SLACK_S
    while time.monotonic() < until:  # beating, past the time the timer would have fired
        assert wire.status().state == "watching"
        time.sleep(0.3)
    assert "reset" not in names(board), names(board)
