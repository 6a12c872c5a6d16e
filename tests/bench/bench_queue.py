"""Enqueue throughput of the durable queue against raw sqlite3, same run.

Run: .venv/bin/python -m tests.bench.bench_queue
Ours: observations offered to RecordQueue, group-committed 1,000 per commit
(CBOR batch, AES-GCM seal, WAL, synchronous=FULL). Baseline: raw sqlite3
inserting the same observations as one row each (their JSON line), 1,000 rows
per transaction, WAL, synchronous=FULL. Also reports bytes on disk per
observation. Goal from the issue: ratio >= 0.5.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from appliance.model import to_json_line
from appliance.queue.queue import QueueSettings, RecordQueue
from tests.appliance.queue.test_records import observation

BATCH = 1000


def raw_sqlite(path: Path, lines: list[str]) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, payload TEXT)")
    t0 = time.perf_counter()
    for i in range(0, len(lines), BATCH):
        db.execute("BEGIN")
        db.executemany("INSERT INTO r (payload) VALUES (?)", ((x,) for x in lines[i : i + BATCH]))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed


async def ours(tmp: Path, n: int) -> tuple[float, float]:
    q = RecordQueue(QueueSettings(str(tmp / "q.db"), str(tmp / "q.key"), commit_max_records=BATCH), lambda e: None)
    obs = [observation(i, 90.0 + i % 10) for i in range(n)]
    t0 = time.perf_counter()
    for o in obs:
        q.offer(o)
    await q.flush()
    elapsed = time.perf_counter() - t0
    await q.checkpoint()
    stats = await q.stats()
    q.close()
    return elapsed, stats.file_bytes / n


def measure(n: int = 100_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lines = [to_json_line(observation(i, 90.0 + i % 10)) for i in range(n)]
        raw = raw_sqlite(tmp / "raw.db", lines)
        mine, per_obs = asyncio.run(ours(tmp, n))
    return {"n": n, "raw_obs_s": n / raw, "ours_obs_s": n / mine, "ratio": raw / mine, "disk_bytes_per_obs": per_obs}


def main() -> None:
    r = measure()
    print(f"raw sqlite3 (JSON row per observation, {BATCH}/txn): {r['raw_obs_s']:,.0f} obs/s")
    print(f"RecordQueue (sealed CBOR batches, {BATCH}/commit):    {r['ours_obs_s']:,.0f} obs/s")
    print(f"ratio {r['ratio']:.2f}x (goal >= 0.5); {r['disk_bytes_per_obs']:.1f} bytes on disk per observation")


if __name__ == "__main__":
    main()
