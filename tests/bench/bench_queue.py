"""Enqueue throughput and bytes on disk of the durable queue at live commit sizes,
against raw sqlite3 writing the same rows, same run.

Run: .venv/bin/python -m tests.bench.bench_queue
Ours: the store's commits as the gateway makes them: 3-13 observations per
commit (30-130 obs/s at one commit per 100 ms), each a sealed CBOR batch in
its own synchronous=FULL transaction (`Store.put`, as the queue's writer
calls it; the commit cadence itself is not waited for). Baseline: raw sqlite3
(WAL, synchronous=FULL) committing the same observations in the same
transactions, one row per observation (its JSON line). Bytes per observation
are the pages the budget counts (used pages + WAL + -shm after a checkpoint),
as committed live and after the compaction the queue runs on rows older than
`compact_after_s` while the uplink is not delivering. Goals (issue #15):
ratio >= 0.5, <= 40 B per observation.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

from appliance.core.model import to_json_line
from appliance.queue.queue import merge_payloads
from appliance.queue.records import encode_batch
from appliance.queue.seal import Sealer, load_or_create_key
from appliance.queue.store import RecordClass, Store
from tests.appliance.queue.test_records import observation
from tests.bench.disk import disk_tempdir

SIZES = (3, 13)  # observations per commit, live


def commit_sizes(n: int, seed: int = 1) -> list[int]:
    rng, sizes, total = random.Random(seed), [], 0
    while total < n:
        sizes.append(min(rng.randint(*SIZES), n - total))
        total += sizes[-1]
    return sizes


def raw_sqlite(path: Path, lines: list[str], sizes: list[int]) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, payload TEXT)")
    t0 = time.perf_counter()
    i = 0
    for k in sizes:
        db.execute("BEGIN")
        db.executemany("INSERT INTO r (payload) VALUES (?)", ((x,) for x in lines[i : i + k]))
        db.execute("COMMIT")
        i += k
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed


def ours(tmp: Path, n: int, sizes: list[int]) -> tuple[float, float, float]:
    store = Store(tmp / "q.db", Sealer(load_or_create_key(tmp / "q.key", create=True)), 512 * 1024 * 1024)
    obs = [observation(i, 90.0 + i % 10) for i in range(n)]
    t0 = time.perf_counter()
    i = 0
    for k in sizes:  # what the writer does per commit: encode, seal, one FULL transaction
        # As the queue's writer calls it while the uplink is not delivering (a backlog).
        store.put(RecordClass.TELEMETRY, [(encode_batch(obs[i : i + k]), k)], durable=True, grow=True)
        i += k
    elapsed = time.perf_counter() - t0
    store.checkpoint()
    live = store.stats().used_bytes / n
    cutoff = int(time.time() * 1000) + 1
    while plan := store.compact_plan(cutoff, 600):
        store.compact_replace([(g, merge_payloads(g.payloads)) for g in plan])
    store.checkpoint()
    compacted = store.stats().used_bytes / n
    store.close()
    return elapsed, live, compacted


def measure(n: int = 30_000) -> dict[str, float]:
    sizes = commit_sizes(n)
    with disk_tempdir() as d:
        tmp = Path(d)
        lines = [to_json_line(observation(i, 90.0 + i % 10)) for i in range(n)]
        raw = raw_sqlite(tmp / "raw.db", lines, sizes)
        mine, live, compacted = ours(tmp, n, sizes)
    return {"n": n, "commits": len(sizes), "raw_obs_s": n / raw, "ours_obs_s": n / mine, "ratio": raw / mine,
            "disk_bytes_per_obs_live": live, "disk_bytes_per_obs": compacted}  # fmt: skip


def main() -> None:
    r = measure()
    print(f"{r['n']:,} observations in {r['commits']:,} commits of {SIZES[0]}-{SIZES[1]} (synchronous=FULL each)")
    print(f"raw sqlite3 (JSON row per observation): {r['raw_obs_s']:,.0f} obs/s")
    print(f"Store (sealed CBOR batch per commit):   {r['ours_obs_s']:,.0f} obs/s")
    print(f"ratio {r['ratio']:.2f}x (goal >= 0.5); bytes per observation counted by the budget: "
          f"{r['disk_bytes_per_obs_live']:.1f} as committed, "
          f"{r['disk_bytes_per_obs']:.1f} compacted (goal <= 40)")  # fmt: skip


if __name__ == "__main__":
    main()
