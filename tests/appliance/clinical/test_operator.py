"""Who the audit trail names for an acknowledgement or a pause on the control socket."""

import os
import pwd
import socket

from appliance.alarms import AlarmCircuit
from appliance.clinical.operator import badge_problem, operator_fields, peer_uid
from appliance.control import ControlServer
from rules.outputs import MemoryOutput
from tests.appliance.test_alarms import RULES


def server(recorded):
    circuit = AlarmCircuit(RULES, [MemoryOutput()], lambda r: None, now=lambda: 1000.0)
    return ControlServer(circuit, "/nonexistent/ctl.sock", audit=lambda kind, fields: recorded.append((kind, fields)))


def test_the_peer_uid_of_a_unix_socket():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_uid(a) == os.getuid()
    with socket.socket() as tcp:
        assert peer_uid(tcp) is None


def test_ack_and_pause_are_recorded_with_the_operator():
    recorded: list[tuple[str, object]] = []
    ctl = server(recorded)
    me = pwd.getpwuid(os.getuid()).pw_name
    assert ctl.handle({"cmd": "ack", "bed": "B1", "badge": "B-1"}, os.getuid())["ok"]
    # The web console acts for its logged-in user; an empty badge field means none.
    assert ctl.handle({"cmd": "pause", "bed": "B1", "operator": "nurse", "badge": ""}, os.getuid())["ok"]
    assert recorded == [
        ("alarm_ack", {"bed": "B1", "rule": None, "uid": os.getuid(), "user": me, "badge": "B-1"}),
        ("audio_pause", {"bed": "B1", "uid": os.getuid(), "user": me, "operator": "nurse"}),
    ]


def test_bad_badges_and_operators_are_refused_and_not_recorded():
    recorded: list[tuple[str, object]] = []
    ctl = server(recorded)
    for req in ({"cmd": "ack", "badge": "x" * 65}, {"cmd": "ack", "badge": "a\nb"}, {"cmd": "ack", "badge": 7},
                {"cmd": "pause", "operator": ["x"]}):  # fmt: skip
        reply = ctl.handle(req, 0)
        assert not reply["ok"] and ("badge" in reply["error"] or "operator" in reply["error"])
    assert recorded == []
    assert badge_problem(None) == badge_problem("") == badge_problem("W-1234") == ""


def test_a_uid_without_a_name_is_still_named():
    assert operator_fields(987654)["user"] == "uid 987654"
    assert operator_fields(None) == {"uid": None, "user": None}
