"""`bedside run` as a subprocess against device simulators on pseudo-terminals.

Real processes, real ptys with termios settings, real signals and a real
sd_notify socket: a cable pull, a garbage burst, and an orderly SIGTERM.
"""

import contextlib
import os
import signal
import socket
import time

import pytest

from tests.integration.helpers import records, spawn, wait_until

pytestmark = pytest.mark.integration


def test_gateway_survives_cable_pull_and_garbage_and_stops_on_sigterm(bench):
    tmp, procs = bench
    out = tmp / "records.jsonl"
    (tmp / "gateway.toml").write_text(
        f"""
[gateway]
bed_id = "ICU-7"
registry_path = "{tmp / "registry.json"}"
[sink]
jsonl_path = "{out}"
[[devices]]
id = "masimo-1"
protocol = "masimo"
port = "{tmp / "masimo0"}"
stale_after_s = 3.0
reopen_min_s = 0.1
reopen_max_s = 0.5
[[devices]]
id = "nonin-1"
protocol = "nonin-2"
port = "{tmp / "nonin0"}"
reopen_min_s = 0.1
reopen_max_s = 0.5
"""
    )
    notify_path = str(tmp / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.2)
    try:
        env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000000"}
        gateway = spawn("run", "--config", str(tmp / "gateway.toml"), env=env)
        procs.append(gateway)
        procs.append(
            spawn(
                "hil",
                "simulate",
                "masimo",
                "--port",
                str(tmp / "masimo0"),
                "--variant",
                "rad8",
                "--scenario",
                "desaturation",
                "--garbage-every",
                "2",
                "--cable-pull-every",
                "4",
                "--cable-down",
                "1.5",
            )
        )
        procs.append(spawn("hil", "simulate", "nonin", "--port", str(tmp / "nonin0"), "--format", "2"))

        def kinds(device):
            return [
                (r["kind"], r["active"]) for r in records(out) if r["type"] == "technical" and r["device_id"] == device
            ]

        def after_reconnect():
            ks = kinds("masimo-1")
            if ("disconnected", True) not in ks:
                return False
            cut = ks.index(("disconnected", True))
            return ("connected", True) in ks[cut:]

        assert wait_until(after_reconnect, 30), kinds("masimo-1")
        assert wait_until(lambda: ("bad_frame", True) in kinds("masimo-1"), 10)
        # Observations keep coming after the reconnect.
        n_before = sum(1 for r in records(out) if r["type"] == "observation" and r["device_id"] == "masimo-1")
        assert wait_until(
            lambda: (
                sum(1 for r in records(out) if r["type"] == "observation" and r["device_id"] == "masimo-1")
                > n_before + 3
            ),
            10,
        )
        obs = [r for r in records(out) if r["type"] == "observation"]
        nonin = [o for o in obs if o["device_id"] == "nonin-1" and o["metric"] == "MDC_PULS_OXIM_SAT_O2"]
        assert nonin and all(o["bed_id"] == "ICU-7" and o["quarantine"] for o in nonin)
        assert {o["code"] for o in obs} >= {150456, 149530, 150448}

        messages: list[str] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not ("WATCHDOG=1" in messages and any("READY=1" in m for m in messages)):
            with contextlib.suppress(TimeoutError):
                messages.append(notify.recv(4096).decode())
        assert any(m.startswith("READY=1") for m in messages), messages
        assert "WATCHDOG=1" in messages

        t0 = time.monotonic()
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(10) == 0, gateway.stderr.read().decode() if gateway.stderr else ""
        assert time.monotonic() - t0 < 5.0
        stderr = gateway.stderr.read().decode() if gateway.stderr else ""
        assert "Traceback" not in stderr, stderr
        assert "shutting down" in stderr
    finally:
        notify.close()
