import asyncio
import os
import stat
import subprocess
import sys

import pytest

from appliance.alarms import AlarmCircuit
from appliance.control import ControlError, ControlServer, request
from rules.outputs import MemoryOutput
from tests.appliance.test_alarms import RULES
from tests.rules.test_engine import obs


@pytest.fixture
async def server(tmp_path):
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    path = tmp_path / "ctl.sock"
    task = asyncio.create_task(ControlServer(circuit, path).run())
    while not path.exists():
        await asyncio.sleep(0.01)
    yield circuit, path
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_socket_mode_list_ack_pause_and_errors(server):
    circuit, path = server
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    circuit.on_record(obs(80, 1000))
    reply = await asyncio.to_thread(request, path, {"cmd": "list"})
    assert [(a["rule_id"], a["state"], a["priority"]) for a in reply["alarms"]] == [("desat", "active", "high")]
    reply = await asyncio.to_thread(request, path, {"cmd": "pause", "bed": "B1"})
    assert reply["alarms"][0]["state"] == "audio_paused"
    reply = await asyncio.to_thread(request, path, {"cmd": "ack", "bed": "B1", "rule": "desat"})
    assert reply["alarms"][0]["state"] == "acknowledged"
    with pytest.raises(ControlError, match="unknown cmd"):
        await asyncio.to_thread(request, path, {"cmd": "reboot"})
    with pytest.raises(ControlError, match="must be strings"):
        await asyncio.to_thread(request, path, {"cmd": "ack", "bed": 3})


async def test_cli_talks_to_the_socket(server):
    circuit, path = server
    circuit.on_record(obs(80, 1000))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "appliance.cli", "alarm", "--socket", str(path), *args],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip

    res = await asyncio.to_thread(cli, "list")
    assert res.returncode == 0 and b"B1\thigh\tactive\tdesat" in res.stdout
    res = await asyncio.to_thread(cli, "ack")
    assert res.returncode == 0 and b"acknowledged" in res.stdout


def test_unreachable_socket_is_one_line_exit_1(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "alarm", "--socket", str(tmp_path / "none"), "list"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 1 and b"cannot reach the gateway" in res.stderr and b"Traceback" not in res.stderr
