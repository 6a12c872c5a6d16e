import os
import socket

from appliance.sdnotify import Notifier


def test_sends_ready_status_and_watchdog(tmp_path):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(1)
    try:
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.enabled and n.watchdog_s == 2.0
        n.ready("running")
        n.watchdog()
        assert server.recv(100) == b"READY=1\nSTATUS=running"
        assert server.recv(100) == b"WATCHDOG=1"
        n.close()
    finally:
        server.close()


def test_absent_socket_is_a_no_op_and_foreign_watchdog_pid_is_ignored():
    n = Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert not n.enabled and n.watchdog_s is None
    n.ready("x")  # must not raise
    n.close()


def test_vanished_socket_does_not_raise(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    n.status("still fine")
    n.close()


def test_a_full_notify_socket_never_blocks(tmp_path):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)  # nobody ever reads it
    try:
        n = Notifier({"NOTIFY_SOCKET": path})
        for _ in range(5000):
            n.watchdog()  # would hang once the queue is full if the socket blocked
        n.close()
    finally:
        server.close()
