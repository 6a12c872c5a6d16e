"""A running `bedside run` beating a running co-processor firmware (real MicroPython,
hil/mpy_host.py) through a pty: kill -STOP of the gateway makes the co-processor
sound the alarm-system-failure pattern within its bound; kill -CONT brings the
heartbeats back and the gateway's acknowledgement silences it."""

import os
import re
import signal
import time
import tty

import pytest

from hil.mpy_host import MpyBoard
from tests.image.coproc.conftest import BUZZER, FIRMWARE, YELLOW
from tests.integration.helpers import gateway_toml, records, spawn, wait_until

pytestmark = pytest.mark.integration
TIMEOUT_S = 3.0  # the shipped bsc_config's TIMEOUT_MS
HEARTBEAT_S = 0.5  # the gateway's default coproc_heartbeat_s


def states(board: MpyBoard) -> list[str]:
    return re.findall(r"coproc: (\w+)", board.stderr())


def test_a_stopped_gateway_makes_the_coprocessor_sound_within_the_bound(bench):
    tmp, procs = bench
    with MpyBoard(FIRMWARE, config="bsc_config", overrides={"BOOT_GRACE_MS": 20000}) as board:
        board.wait_event("boot")
        # Mirroring off: the default rules' low "clock unsynchronised" alarm would sound too.
        sections = (
            f'[alarms]\ncoproc_port = "{board.port}"\ncoproc_mirror = false\nevents_path = "{tmp / "alarms.jsonl"}"\n'
        )
        (tmp / "gateway.toml").write_text(gateway_toml(tmp, "ICU-9", sections=sections))
        gateway = spawn("run", "--config", str(tmp / "gateway.toml"))
        procs.append(gateway)
        assert wait_until(lambda: "watching" in states(board), 20), board.stderr()
        beating = time.monotonic() + 0.5  # after the first connection's 200 ms self-test blip
        time.sleep(2 * TIMEOUT_S)  # beating: nothing sounds
        assert board.first_on(BUZZER, beating) is None and gateway.poll() is None

        gateway.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            assert wait_until(lambda: board.first_on(BUZZER, stopped) is not None, TIMEOUT_S + 2)
            sounded = board.first_on(BUZZER, stopped)
            assert sounded is not None
            # The last heartbeat left at most one period before the stop.
            assert TIMEOUT_S - HEARTBEAT_S - 0.05 <= sounded - stopped <= TIMEOUT_S + 0.4, sounded - stopped
            assert board.first_on(YELLOW, stopped) is not None  # the failure pattern's red + yellow
            assert states(board)[-1] == "failed"
        finally:
            gateway.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        # Heartbeats back (recovered: still sounding) and the gateway's ACK (watching); the
        # two may fall within one 10 ms player turn, so "recovered" need not be logged.
        assert wait_until(lambda: states(board)[-1] == "watching", 5), states(board)
        assert states(board)[-3:] in (["failed", "recovered", "watching"], ["watching", "failed", "watching"])
        silent_from = time.monotonic() + 0.05
        time.sleep(2 * TIMEOUT_S)
        assert board.first_on(BUZZER, silent_from) is None, "acknowledged: silent again"
        assert board.level(BUZZER) == 0 and board.level(YELLOW) == 0
        took = sounded - stopped
        print(f"co-processor sounded {took:.2f} s after SIGSTOP, silent again {silent_from - resumed:.2f} s after CONT")

        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(10) == 0


def test_a_silent_coprocessor_raises_the_output_failure_alarm(bench):
    tmp, procs = bench
    master, slave = os.openpty()  # a port with nothing on the other end of the wire
    tty.setraw(slave)
    try:
        sections = f'[alarms]\ncoproc_port = "{os.ttyname(slave)}"\nevents_path = "{tmp / "alarms.jsonl"}"\n'
        (tmp / "gateway.toml").write_text(gateway_toml(tmp, "ICU-9", sections=sections))
        gateway = spawn("run", "--config", str(tmp / "gateway.toml"))
        procs.append(gateway)

        def raised():
            return [
                a for a in records(tmp / "alarms.jsonl")
                if a.get("rule_id") == "output-failure" and a["state"] == "active"
            ]  # fmt: skip

        assert wait_until(lambda: bool(raised()), 15)
        alarm = raised()[0]
        assert alarm["priority"] == "high" and alarm["device_id"] == "coproc" and alarm["kind"] == "technical"
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(10) == 0
    finally:
        os.close(master)
        os.close(slave)
