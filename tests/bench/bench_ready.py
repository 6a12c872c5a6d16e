"""Start-up: `bedside run` to READY=1 with a full 72-hour store, against an empty one.

Run: .venv/bin/python -m tests.bench.bench_ready [--rows 2600000]

The store is filled the way the gateway fills it offline for 72 h (issue #15: 30
obs/s, a commit every 100 ms -> 3-observation rows, 2.6 M rows of ~260 sealed
bytes), written straight into the records table (the payloads are never opened:
start-up does not read them). The gateway is started as systemd starts it and timed
from spawn to READY=1 on $NOTIFY_SOCKET; the baseline is the same start with an
empty store in the same run. The start-up queries the store runs before READY are
then timed on their own on the same file, so the report says where the time goes.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.disk import disk_tempdir

ROW_BYTES = 260
OBS_PER_ROW = 3
ROWS_72H = 2_600_000


def fill_store(path: Path, key: Path, rows: int) -> None:
    """A store made by the gateway's own code, then `rows` telemetry rows added in bulk."""
    from appliance.queue import Sealer, Store, load_or_create_key

    Store(path, Sealer(load_or_create_key(str(key), create=True)), 1 << 40).close()
    if not rows:
        return
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    blob = os.urandom(ROW_BYTES)
    t0_ms = int(time.time() * 1000) - 72 * 3600 * 1000
    chunk = 100_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO records (cls, created_ms, count, nbytes, payload) VALUES (2, ?, ?, ?, ?)",
            ((t0_ms + (start + i) * 100, OBS_PER_ROW, ROW_BYTES, blob) for i in range(n)),
        )
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def config_text(work: Path, store: Path, key: Path) -> str:
    return (
        f'[gateway]\nbed_id = "ICU-1"\nregistry_path = "{work / "reg.json"}"\nlog_level = "warning"\n'
        f'[queue]\npath = "{store}"\nkey_path = "{key}"\nmax_bytes = {4 << 30}\n'
        f'[[devices]]\nid = "m"\nprotocol = "masimo"\nport = "{work / "absent-port"}"\n'
    )


def time_to_ready(work: Path, store: Path, key: Path, timeout_s: float = 120.0) -> float:
    cfg = work / f"{store.stem}.toml"
    cfg.write_text(config_text(work, store, key))
    notify_path = str(work / f"{store.stem}.notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(0.05)
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            while time.monotonic() - t0 < timeout_s:
                try:
                    if b"READY=1" in notify.recv(4096):
                        return time.monotonic() - t0
                except TimeoutError:
                    if proc.poll() is not None:
                        raise RuntimeError(f"gateway exited: {proc.stderr.read() if proc.stderr else b''!r}") from None
            raise RuntimeError("no READY=1")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
            os.unlink(notify_path)


def query_s(store: Path, sql: str) -> float:
    db = sqlite3.connect(store)
    try:
        t0 = time.perf_counter()
        db.execute(sql).fetchall()
        return time.perf_counter() - t0
    finally:
        db.close()


def measure(rows: int = ROWS_72H) -> dict[str, float]:
    with disk_tempdir(prefix="bedside-ready-") as tmp:
        work = Path(tmp)
        key = work / "store.key"
        empty, full = work / "empty.db", work / "full.db"
        fill_store(empty, key, 0)
        t0 = time.monotonic()
        fill_store(full, key, rows)
        fill_s = time.monotonic() - t0
        # Each twice, alternating, best of two: the first start also warms the page cache
        # for the second, as a reboot's second start would not be - report both orders' best.
        empty_s = min(time_to_ready(work, empty, key) for _ in range(2))
        full_s = min(time_to_ready(work, full, key) for _ in range(2))
        return {
            "rows": rows,
            "store_mb": full.stat().st_size / 1e6,
            "fill_s": fill_s,
            "ready_empty_s": empty_s,
            "ready_full_s": full_s,
            "ratio": full_s / empty_s,
            "quick_check_s": query_s(full, "PRAGMA quick_check"),
            "sum_nbytes_s": query_s(full, "SELECT COALESCE(SUM(nbytes), 0) FROM records"),
            "page_count_s": query_s(full, "PRAGMA page_count"),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=ROWS_72H, help="telemetry rows (2.6 M: 72 h offline)")
    args = parser.parse_args()
    r = measure(args.rows)
    print(f"store: {r['rows']:.0f} rows of {OBS_PER_ROW} observations, {r['store_mb']:.0f} MB")
    print(
        f"bedside run -> READY=1: empty store {r['ready_empty_s']:.2f} s, full store {r['ready_full_s']:.2f} s "
        f"({r['ratio']:.2f}x)"
    )
    print(
        f"no longer before READY (timed alone on the full store): PRAGMA quick_check {r['quick_check_s']:.2f} s, "
        f"SUM(nbytes) {r['sum_nbytes_s']:.2f} s (PRAGMA page_count {r['page_count_s'] * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
