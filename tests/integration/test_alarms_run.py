"""`bedside run` with rules, a control socket and a JSON-lines alarm output,
against a simulated oximeter on a pty; operated with `bedside alarm`."""

import json
import os
import signal
import time

import pytest

from tests.integration.helpers import cli, gateway_toml, records, spawn, wait_until

pytestmark = pytest.mark.integration


def test_alarm_raised_listed_acknowledged_and_cleared(bench):
    tmp, procs = bench
    (tmp / "rules.toml").write_text(
        """
[[rule]]
id = "tachy"
kind = "limit"
metric = "MDC_PULS_OXIM_PULS_RATE"
above = 120.0
clear = 110.0
for_s = 2.0
priority = "high"
message = "Pulse high"
"""
    )
    cfg = tmp / "gateway.toml"
    alarm_section = (
        f'[alarms]\nrules_path = "{tmp / "rules.toml"}"\ncontrol_socket = "{tmp / "control.sock"}"\n'
        f'events_path = "{tmp / "alarms.jsonl"}"\n'
    )
    cfg.write_text(gateway_toml(tmp, "ICU-5", sections=alarm_section, device=("nonin-1", "nonin", "nonin0")))
    gateway = spawn("run", "--config", str(cfg))
    procs.append(gateway)
    # Tachycardia scenario 20x faster: pulse passes 120 /min after ~2 s.
    procs.append(
        spawn("hil", "simulate", "nonin", "--port", str(tmp / "nonin0"), "--scenario", "tachycardia", "--speed", "20")
    )

    def listed():
        res = cli("alarm", "--config", str(cfg), "list", "--bed", "ICU-5")
        return res.stdout.decode() if res.returncode == 0 else ""

    assert wait_until(lambda: "ICU-5\thigh\tactive\ttachy\tPulse high" in listed(), 30), listed()
    assert os.stat(tmp / "control.sock").st_mode & 0o777 == 0o660
    res = cli("alarm", "--config", str(cfg), "ack", "--bed", "ICU-5", "--rule", "tachy")
    assert res.returncode == 0 and b"acknowledged" in res.stdout
    # The scenario repeats every 9 s at this speed: the pulse falls back and the alarm clears.
    assert wait_until(lambda: "no alarms" in listed(), 30)

    def alarm_states(path):
        return [json.loads(x)["state"] for x in path.read_text().splitlines() if '"type":"alarm"' in x]

    assert wait_until(lambda: (tmp / "alarms.jsonl").exists() and "cleared" in alarm_states(tmp / "alarms.jsonl"), 10)
    assert alarm_states(tmp / "alarms.jsonl")[:3] == ["active", "acknowledged", "cleared"]
    alarms = [r for r in records(tmp / "records.jsonl") if r["type"] == "alarm"]
    assert alarms and alarms[0]["observation_ids"] and alarms[0]["bed_id"] == "ICU-5"
    gateway.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert gateway.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert not (tmp / "control.sock").exists()
