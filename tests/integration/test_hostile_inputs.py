"""Hostile HL7 on one port must not stall the alarm path for the devices on the others.

The real gateway process runs an HL7 tcp:// listener beside a Masimo oximeter on a
pseudo-terminal and its control socket. While the worst inputs found by outside
testing arrive on the HL7 port (a 20,000-level OBX-4, a 1 MB message of 20,000
OBX rows, idle and one-byte-a-second connections beyond the connection limit,
a sender that never frames, out-of-range timestamps, non-numbers, megabytes
without a start block), the Masimo device must keep its cadence, the control
socket must keep answering, a well-behaved HL7 sender must still be served, and
the event loop must not fall behind (no loop_lag event; the worst lag is read
from the gateway's closing log line and reported).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import socket
import statistics
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from appliance.control import request
from drivers.hl7.mllp import frame
from tests.integration.helpers import records, spawn, wait_until

pytestmark = pytest.mark.integration

MSH = "MSH|^~\\&|ATTACK|LAB|||{ts}||ORU^R01^ORU_R01|{mid}|P|2.6|||AL|NE\r"
OBR = "OBR|1||1|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||{ts}\r"


def obx(n: int, value: str = "97", where: str = "1.3.1.1", when: str = "") -> str:
    return f"OBX|{n}|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|{where}|{value}|262688^MDC_DIM_PERCENT^MDC|||||R|||{when}\r"


def message(mid: str, rows: str) -> bytes:
    ts = datetime.now().strftime("%Y%m%d%H%M%S")
    return frame((MSH.format(ts=ts, mid=mid) + OBR.format(ts=ts) + rows).encode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def send_and_read_ack(port: int, data: bytes, timeout_s: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(data)
        reply = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while b"\x1c\r" not in reply:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply


def vm_kib(pid: int, field: str) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(f"{field}:"):
            return int(row.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def connect(port: int, source: str) -> socket.socket:
    """A connection from another loopback address: another host, as the listener sees it."""
    s = socket.socket()
    s.settimeout(5)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def trickle_bytes(conns: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(0.5):
        for s in conns:
            with contextlib.suppress(OSError):
                s.sendall(b"^")


class ControlProbe(threading.Thread):
    """Asks the control socket for the alarm list every 50 ms and keeps the latencies."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.latencies_s: list[float] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            started = time.perf_counter()
            try:
                request(self.path, {"cmd": "list"}, timeout_s=5.0)
            except Exception as exc:
                self.failures.append(str(exc))
            self.latencies_s.append(time.perf_counter() - started)
            time.sleep(0.05)


def test_hostile_hl7_does_not_stall_the_masimo_device_or_the_control_socket(bench):
    tmp, procs = bench
    out, control, port = tmp / "records.jsonl", tmp / "control.sock", free_port()
    (tmp / "gateway.toml").write_text(
        f"""
[gateway]
bed_id = "ICU-H"
registry_path = "{tmp / "registry.json"}"
[sink]
jsonl_path = "{out}"
[alarms]
control_socket = "{control}"
[[devices]]
id = "masimo-1"
protocol = "masimo"
port = "{tmp / "masimo0"}"
stale_after_s = 3.0
reopen_min_s = 0.1
reopen_max_s = 0.5
[[devices]]
id = "hl7-1"
protocol = "hl7"
port = "tcp://127.0.0.1:{port}"
"""
    )
    gateway = spawn("run", "--config", str(tmp / "gateway.toml"))
    procs.append(gateway)
    procs.append(spawn("hil", "simulate", "masimo", "--port", str(tmp / "masimo0"), "--variant", "rad8"))

    def masimo_spo2() -> list[dict[str, Any]]:
        return [
            r
            for r in records(out)
            if r["type"] == "observation" and r["device_id"] == "masimo-1" and r["metric"] == "MDC_PULS_OXIM_SAT_O2"
        ]

    assert wait_until(lambda: len(masimo_spo2()) >= 3 and control.exists(), 30), gateway.stderr
    rss_before_kib = vm_kib(gateway.pid, "VmRSS")
    probe = ControlProbe(control)
    probe.start()
    attack_started = time.time()
    held: list[socket.socket] = []
    dripping = threading.Event()
    try:
        # Beyond the connection limit, from attackers' own addresses: idle
        # connections, and slow-loris ones that trickle a message a byte at a time.
        for i in range(8):
            held.append(connect(port, f"127.0.0.{2 + i % 2}"))
        trickle = [connect(port, f"127.0.0.{4 + i % 4}") for i in range(16)]
        held += trickle
        for s in trickle:
            with contextlib.suppress(OSError):
                s.sendall(b"\x0bMSH|")
        dripping = threading.Event()
        drip = threading.Thread(target=trickle_bytes, args=(trickle, dripping), daemon=True)
        drip.start()
        # A well-behaved sender is still served while those connections hang around.
        time.sleep(2.5)
        ok = send_and_read_ack(port, message("GOOD-1", obx(1, "96")))
        assert b"MSA|AA|GOOD-1" in ok or b"MSA|CA|GOOD-1" in ok, ok
        deep = ".".join(["1"] * 20_000)
        send_and_read_ack(port, message("DEEP", obx(1, "97", where=deep)))
        send_and_read_ack(port, message("ROWS", "".join(obx(n) for n in range(1, 20_001))))
        for value in ("NaN", "inf", "1e400", "-inf"):
            send_and_read_ack(port, message(f"NUM-{value}", obx(1, value)))
        for when in ("00010101000000+1400", "99991231235959-1400"):
            reply = send_and_read_ack(port, message(f"TS-{when[:4]}", obx(1, "97", when=when)))
            assert b"MSA|A" in reply or b"MSA|C" in reply, reply  # answered, not dropped
        # Unframed: garbage first, then a proper message on the same connection.
        reply = send_and_read_ack(port, b"garbage before the start block\r" + message("AFTER-GARBAGE", obx(1, "95")))
        assert b"AFTER-GARBAGE" in reply, reply
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            chunk = b"MSH|^~\\&|" + b"X" * 65_000
            with contextlib.suppress(OSError):
                for _ in range(160):  # ~10 MB never framed
                    s.sendall(chunk)
        ok = send_and_read_ack(port, message("GOOD-2", obx(1, "94")))
        assert b"GOOD-2" in ok, ok
        time.sleep(3)
    finally:
        dripping.set()
        probe.done.set()
        probe.join(10)
        for s in held:
            s.close()
    attack_ended = time.time()
    peak_kib = vm_kib(gateway.pid, "VmHWM")
    gateway.send_signal(signal.SIGTERM)
    _, err = gateway.communicate(timeout=30)
    stderr = err.decode(errors="replace")
    assert gateway.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]

    # The oximeter kept its cadence (1 line per second) through the attack.
    times = [
        datetime.fromisoformat(r["received"].replace("Z", "+00:00")).timestamp()
        for r in masimo_spo2()
        if attack_started - 1 <= datetime.fromisoformat(r["received"].replace("Z", "+00:00")).timestamp()
    ]
    times = [t for t in times if t <= attack_ended]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 3 and max(gaps) < 1.6, gaps
    technical = [(r["device_id"], r["kind"]) for r in records(out) if r["type"] == "technical" and r["active"]]
    assert ("masimo-1", "stale") not in technical
    assert ("gateway", "loop_lag") not in technical

    # The control socket answered every request, quickly.
    assert probe.failures == []
    worst_ms = max(probe.latencies_s) * 1000
    p95_ms = statistics.quantiles(probe.latencies_s, n=20)[-1] * 1000
    lag = re.search(r"worst loop lag (\d+) ms", stderr)
    assert lag is not None, stderr[-2000:]
    print(
        f"control socket: p95 {p95_ms:.1f} ms, worst {worst_ms:.1f} ms; worst loop lag {lag.group(1)} ms; "
        f"RSS {rss_before_kib / 1024:.1f} MiB before, peak {peak_kib / 1024:.1f} MiB"
    )
    # Bounded buffers: megabytes of hostile input must not become megabytes of memory.
    assert peak_kib - rss_before_kib < 32 * 1024
    assert worst_ms < 100, f"control socket worst {worst_ms:.0f} ms"
    assert int(lag.group(1)) < 250
