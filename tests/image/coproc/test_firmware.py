"""The alarm co-processor firmware on the real MicroPython interpreter (the WebAssembly port
under node) with the board model: its UART on a pty, its pins stamped as they change.

Bounds: the player runs every 10 ms and the UART is polled every 5 ms; the board
model reports through a pipe. 350 ms is allowed on top of the configured timeout (a loaded CI machine).
"""

from __future__ import annotations

import itertools
import time

from rules.outputs.coproc_wire import frame
from tests.image.coproc.conftest import BUZZER, CYAN, RED, YELLOW, firmware_module, pulses, start, wait_for

SLACK_S = 0.35


def test_heartbeat_loss_sounds_the_failure_pattern_within_the_default_bound():
    board, wire = start()  # the shipped bsc_config: 3 s
    try:
        assert wire.hello().state == "arming"
        for _ in range(6):
            assert wire.status().state == "watching"
            time.sleep(0.5)
        wire.send("HB", "-", "-")
        stopped = time.monotonic()
        assert wire.reply() is not None
        assert board.first_on(BUZZER, 0.0) is None, "nothing sounds while heartbeats come"
        assert wait_for(lambda: board.first_on(BUZZER, stopped) is not None, 3.0 + 1.0)
        sounded = board.first_on(BUZZER, stopped)
        assert sounded is not None
        assert 3.0 - 0.05 <= sounded - stopped <= 3.0 + SLACK_S, sounded - stopped
        # The failure pattern: the 10-pulse high-priority burst (3+2, pause, 3+2) with
        # the red and yellow LEDs flashing together at 2 Hz.
        time.sleep(3.6)
        burst = pulses(board, BUZZER, sounded, sounded + 3.5)
        assert len(burst) == 10, burst
        assert all(0.1 <= length <= 0.2 for _, length in burst), burst
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(burst)]
        assert max(gaps) > 0.6 > max(gaps[:2]), gaps  # the pause between the halves
        red = pulses(board, RED, sounded, sounded + 2.0)
        yellow = pulses(board, YELLOW, sounded, sounded + 2.0)
        assert len(red) == len(yellow) >= 3
        assert all(abs(r[0] - y[0]) < 0.02 for r, y in zip(red, yellow, strict=True))
        assert board.first_on(CYAN, 0.0) is None
        assert wire.status().state == "recovered"
    finally:
        wire.ser.close()
        board.close()


def test_heartbeats_back_still_sound_until_the_gateway_acknowledges(fast):
    board, wire = fast
    wire.hello()
    wire.status()
    assert wait_for(lambda: board.level(BUZZER) == 1, 2.0)
    back = wire.status()
    assert back.state == "recovered" and back.failures == 1
    t_back = time.monotonic()
    for _ in range(4):  # beating again, not yet acknowledged: still sounding
        time.sleep(0.4)
        assert wire.status().state == "recovered"
    assert len(pulses(board, BUZZER, t_back, t_back + 1.6)) >= 3
    assert wire.status("ACK").state == "watching"
    acked = time.monotonic()
    time.sleep(0.1)
    assert [board.level(p) for p in (BUZZER, RED, YELLOW, CYAN)] == [0, 0, 0, 0]
    for _ in range(4):
        time.sleep(0.3)
        assert wire.status().state == "watching"
    assert board.first_on(BUZZER, acked + 0.05) is None
    assert board.first_on(RED, acked + 0.05) is None


def test_an_ack_without_heartbeats_back_changes_nothing(fast):
    board, wire = fast
    wire.hello()
    wire.status()
    assert wait_for(lambda: board.level(BUZZER) == 1, 2.0)
    wire.send("ACK")
    status = wire.reply()
    assert status is not None
    assert "failed" in status.args  # ACK is only taken once heartbeats are back


def test_corrupted_and_replayed_frames_are_ignored_and_counted(fast):
    board, wire = fast
    wire.hello()
    assert wire.status().state == "watching"
    last_valid = time.monotonic()
    good = frame(wire.session, wire.seq + 1, "HB", "-", "-")  # what the corruptions start from
    corrupt = [
        good[:10] + bytes([good[10] ^ 0x01]) + good[11:],  # one bit flipped
        good[:-5] + (b"0000\n" if good[-5:] != b"0000\n" else b"0001\n"),  # wrong CRC
        good.replace(b"$B1", b"$B2"),  # another protocol version (CRC now wrong too)
        frame("0000", 1, "HB"),  # a valid CRC, but no 8-digit session: bad
        frame("ZZZZZZZZ", 1, "HELLO"),  # 8 characters, not hex: bad (not a new session)
        frame("deadbeeg", 1, "HELLO"),
        frame(wire.session, 1, "HB", "-", "-").replace(b",1,", b",x,"),  # bad sequence number
        b"$" + b"A" * 200 + b"\n",  # over-long line
        b"\x00\xff garbage\n",
    ]
    if good[-5:].lower() != good[-5:]:
        corrupt.append(good[:-5] + good[-5:].lower())  # CRC in lower case
    for i, data in enumerate(corrupt * 2):
        wire.raw(data)
        time.sleep(0.15)
        assert wire.silence(0.01), f"frame {i} was answered"
    stale = wire.seq  # replays: the last accepted seq, an older one, another session's
    wire.raw(frame(wire.session, stale, "HB", "-", "-"))
    wire.raw(frame(wire.session, stale - 1, "HB", "-", "-"))
    wire.raw(frame("deadbeef", stale + 5, "HB", "-", "-"))
    assert wire.silence(0.3)
    assert wait_for(lambda: board.first_on(BUZZER, last_valid) is not None, 2.5), "corrupt frames are no heartbeat"
    sounded = board.first_on(BUZZER, last_valid)
    assert sounded is not None and sounded - last_valid >= 1.0 - 0.05
    status = wire.status()
    assert status.bad == len(corrupt) * 2, status
    assert status.replayed == 3, status


def test_boot_grace_then_failure_without_any_heartbeat(fast):
    board, _wire = fast
    started = time.monotonic()
    assert wait_for(lambda: board.first_on(BUZZER, 0.0) is not None, 3.0)
    sounded = board.first_on(BUZZER, 0.0)
    assert sounded is not None and 1.0 <= sounded - started <= 1.5 + SLACK_S + 0.5  # board start included


def test_version_self_test_and_unknown_commands(fast):
    board, wire = fast
    wire.hello()
    proto = firmware_module("bsc_proto")
    assert wire.ask("VER").args == (proto.FW_VERSION, "B1")
    asked = time.monotonic()
    assert wire.ask("TEST").args == ("OK",)
    assert wait_for(lambda: all(board.first_on(p, asked) for p in (BUZZER, RED, YELLOW, CYAN)), 1.0)
    time.sleep(0.4)
    assert [board.level(p) for p in (BUZZER, RED, YELLOW, CYAN)] == [0, 0, 0, 0]
    reply = wire.ask("FLY")
    assert (reply.kind, reply.args) == ("ERR", ("FLY",))


def test_mirrors_the_gateways_highest_alarm_when_asked(fast):
    board, wire = fast
    wire.hello()
    t0 = time.monotonic()
    for _ in range(12):
        assert wire.status("HB", "H", "H").state == "watching"
        time.sleep(0.3)
    high = pulses(board, BUZZER, t0, t0 + 3.6)
    assert len(high) == 10, high  # the high-priority burst (3.5 s)
    assert len(pulses(board, RED, t0, t0 + 1.5)) >= 2
    assert board.first_on(YELLOW, t0) is None  # high: red only (yellow too means failure)
    assert wire.status("MIRROR", "0").mirror is False
    off = time.monotonic()
    for _ in range(4):
        wire.status("HB", "H", "H")
        time.sleep(0.25)
    assert board.first_on(BUZZER, off + 0.05) is None
    assert wire.status("MIRROR", "1").mirror is True
    wire.status("HB", "L", "L")
    assert wait_for(lambda: board.level(CYAN) == 1, 0.5)  # low: steady cyan
