import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@pytest.fixture
async def quick_server(tmp_path):
    """A server that gives up on a silent client after 0.3 s."""
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    path = tmp_path / "ctl.sock"
    task = asyncio.create_task(ControlServer(circuit, path, timeout_s=0.3).run())
    while not path.exists():
        await asyncio.sleep(0.01)
    yield path
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def exchange(path, data: bytes, *, eof: bool = False) -> Any:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        await writer.drain()
        if eof:
            writer.write_eof()
        async with asyncio.timeout(5):
            line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return json.loads(line)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"[" * 2000 + b"\n", "nested deeper than 8 levels"),
        (b'{"cmd": "list", "bed": ' + b"[" * 50 + b"\n", "nested deeper than 8 levels"),
        (b'{"cmd": "list", "bed": "' + b"x" * 10_000 + b'"}\n', "longer than 4096 bytes"),
        (b"x" * 100_000, "longer than 4096 bytes"),
        (b'{"cmd": "list", "bed": "\xff\xfe"}\n', "not UTF-8"),
        (b"[]\n", "must be a JSON object"),
        (b'"list"\n', "must be a JSON object"),
        (b'{"cmd": "reboot"}\n', "unknown cmd 'reboot'"),
        (b'{"cmd": ["list"]}\n', "unknown cmd"),
        (b"\n", "not JSON"),
        (b"{cmd: list}\n", "not JSON"),
        (b'{"cmd": "list"', "no complete request line within 0.3 s"),
        (b"", "no complete request line within 0.3 s"),
    ],
)
async def test_every_bad_request_gets_one_error_reply_over_the_socket(quick_server, data, error):
    reply = await exchange(quick_server, data)
    assert reply["ok"] is False and error in reply["error"], reply


async def test_a_request_at_the_size_limit_and_one_without_newline_are_answered(quick_server):
    head = b'{"cmd": "list", "bed": "'
    padded = head + b"x" * (4096 - len(head) - 2) + b'"}'
    assert len(padded) == 4096
    assert (await exchange(quick_server, padded + b"\n")) == {"ok": True, "alarms": []}
    assert (await exchange(quick_server, b'{"cmd": "list"}', eof=True)) == {"ok": True, "alarms": []}


async def test_the_server_keeps_serving_after_hostile_requests(quick_server):
    for data in (b"[" * 5000 + b"\n", b"\xff" * 5000 + b"\n", b"{" * 3000):
        await exchange(quick_server, data)
    assert (await exchange(quick_server, b'{"cmd": "list"}\n'))["ok"] is True


async def test_run_never_deletes_a_regular_file_at_the_socket_path(tmp_path):
    store = tmp_path / "store.db"
    store.write_bytes(b"3661 records")
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None)
    with pytest.raises(ControlError, match="is a regular file, not a socket; refusing to replace it"):
        async with asyncio.timeout(5):  # the old code deleted the file and served on
            await ControlServer(circuit, store).run()
    assert store.read_bytes() == b"3661 records"


async def test_run_replaces_a_stale_socket_but_not_a_live_one(server, tmp_path):
    circuit, live = server
    with pytest.raises(ControlError, match="another process is listening"):
        async with asyncio.timeout(5):
            await ControlServer(circuit, live).run()
    assert (await asyncio.to_thread(request, live, {"cmd": "list"}))["ok"]  # the live one is untouched
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # left behind, nobody listening: as after a crash
    task = asyncio.create_task(ControlServer(circuit, stale).run())
    try:
        async with asyncio.timeout(5):
            while True:
                with contextlib.suppress(ControlError):
                    if (await asyncio.to_thread(request, stale, {"cmd": "list"}))["ok"]:
                        break
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not stale.exists()


def _check_reply(reply: object) -> None:
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
    if reply["ok"]:
        assert isinstance(reply.get("alarms", reply.get("audit")), list), reply
    else:
        assert isinstance(reply.get("error"), str) and reply["error"], reply


JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=20) | st.sampled_from(["list", "ack", "pause"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["cmd", "bed", "rule"]), inner),
    max_leaves=30,
)
LINES = st.one_of(
    st.binary(max_size=6000),
    st.text(max_size=200).map(str.encode),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.integers(0, 3000).map(lambda n: b"[" * n),
    st.integers(0, 3000).map(lambda n: b'{"cmd":' * n),
)


@settings(max_examples=500, deadline=None)
@given(line=LINES)
def test_reply_for_any_bytes_is_a_reply_and_never_raises(line):
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    reply = ControlServer(circuit, "/nonexistent").reply_for(line)
    _check_reply(reply)
    json.dumps(reply)


@pytest.fixture(scope="module")
def threaded_server(tmp_path_factory):
    """A real server on its own loop thread, for synchronous hypothesis tests; records
    anything the loop saw go unhandled."""
    path = tmp_path_factory.mktemp("ctl") / "c.sock"
    unhandled: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    task = loop.create_task(ControlServer(circuit, path, timeout_s=0.5).run())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    # The socket file appears at bind(), before listen(): wait until a connect succeeds
    # (a CI run once met "Connection refused" in that gap).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                break
            except OSError:
                time.sleep(0.01)
    yield path, unhandled
    loop.call_soon_threadsafe(task.cancel)
    time.sleep(0.1)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    loop.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=LINES.map(lambda b: b.replace(b"\n", b"")))
def test_any_bytes_line_over_the_real_socket_gets_one_reply(threaded_server, line):
    path, unhandled = threaded_server
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(line + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    _check_reply(json.loads(data))
    assert not unhandled, unhandled


async def test_a_reply_that_cannot_be_serialised_is_still_answered(tmp_path, monkeypatch):
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    monkeypatch.setattr(circuit, "alarms", lambda: [{"bed_id": "B1", "weird": object()}])
    path = tmp_path / "ctl.sock"
    task = asyncio.create_task(ControlServer(circuit, path).run())
    try:
        while not path.exists():
            await asyncio.sleep(0.01)
        reply = await exchange(path, b'{"cmd": "list"}\n')
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert reply == {"ok": False, "error": "internal error (see the gateway log)"}


async def test_idle_connections_beyond_the_bound_cannot_starve_the_process_or_the_operator(tmp_path):
    """The outside tester's descriptor flood: clients that connect and say nothing,
    reconnecting as they are timed out. The server keeps at most `max_clients`
    waiting connections, closing the longest-waiting one, and an operator still gets in."""
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    path = tmp_path / "ctl.sock"
    control = ControlServer(circuit, path, max_clients=8)
    task = asyncio.create_task(control.run())
    while not path.exists():
        await asyncio.sleep(0.01)
    idle = []
    try:
        for _ in range(40):
            idle.append(await asyncio.open_unix_connection(str(path)))
        await asyncio.sleep(0.1)
        assert len(control._waiting) <= 8 and control.evicted >= 32
        reply = await asyncio.to_thread(request, path, {"cmd": "list"}, 2.0)
        assert reply["ok"] is True
    finally:
        for _, writer in idle:
            writer.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_operator_client_waits_for_a_full_listen_queue_instead_of_failing_at_once(tmp_path):
    """A local client connecting in a tight loop fills the socket's listen queue; the
    CLI used to give up on the first EAGAIN ('Resource temporarily unavailable')."""
    path = str(tmp_path / "q.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    fillers = []
    try:
        while True:  # fill the queue until the kernel says EAGAIN
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:
                s.close()
                break
            fillers.append(s)

        def serve() -> None:
            time.sleep(0.3)
            for _ in range(len(fillers) + 1):
                conn, _ = server.accept()
                if conn.recv(4096).startswith(b'{"cmd": "list"}'):
                    conn.sendall(b'{"ok": true, "alarms": []}\n')
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        for s in fillers:
            s.sendall(b"\n")
        assert request(path, {"cmd": "list"}, timeout_s=5.0) == {"ok": True, "alarms": []}
    finally:
        for s in fillers:
            s.close()
        server.close()


async def test_closing_waiting_clients_to_make_room_logs_no_errors(tmp_path):
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    path = tmp_path / "ctl.sock"
    control = ControlServer(circuit, path, max_clients=2)
    task = asyncio.create_task(control.run())
    while not path.exists():
        await asyncio.sleep(0.01)
    try:
        clients = [await asyncio.open_unix_connection(str(path)) for _ in range(20)]
        await asyncio.sleep(0.2)
        for _, writer in clients:
            writer.close()
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert control.evicted == 18 and errors == []
