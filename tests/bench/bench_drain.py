"""Backlog drain: N observations (default 7.8 M = 72 h at 30 obs/s) from the
store to a real Mosquitto over mutual TLS 1.3, while a live stream continues.

Run: .venv/bin/python -m tests.bench.bench_drain [--observations N]
Compared in the same run with a raw gmqtt publisher sending one QoS 1 message
per observation (measured on a sample, over the same broker and TLS), as
observations per second. The goal in the issue: 7.8 M drained in under 5 min.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from appliance.model import to_json_line
from appliance.queue.queue import QueueSettings, RecordQueue
from appliance.queue.records import encode_batch
from appliance.queue.store import RecordClass
from appliance.uplink.client import Uplink, UplinkSettings, _AckClient, _close
from appliance.uplink.tls import client_context
from hil.broker import Broker, make_pki
from tests.appliance.queue.test_records import observation

BATCH = 2000


def fill(queue: RecordQueue, n: int) -> float:
    t0 = time.perf_counter()
    rows: list[tuple[bytes, int]] = []
    for start in range(0, n, BATCH):
        obs = [observation(i, 90.0 + i % 10) for i in range(start, min(n, start + BATCH))]
        rows.append((encode_batch(obs), len(obs)))
        if len(rows) == 50:
            queue.store.put(RecordClass.TELEMETRY, rows, durable=False)
            rows = []
    if rows:
        queue.store.put(RecordClass.TELEMETRY, rows, durable=False)
    return time.perf_counter() - t0


async def raw_gmqtt(broker: Broker, pki_client, sample: int) -> float:
    client = _AckClient("gw-1")
    client.set_config({"reconnect_retries": 0})
    await client.connect("127.0.0.1", broker.port, ssl=client_context(pki_client))
    window = 19  # mosquitto's Receive Maximum (20) less one: gmqtt's id pool
    lines = [to_json_line(observation(i)).encode() for i in range(sample)]
    t0 = time.perf_counter()
    pending: set[asyncio.Future[int]] = set()
    for line in lines:
        if len(pending) >= window:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(client.publish_tracked("bedside/v1/gw-1/telemetry", line))
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - t0
    await _close(client)
    return sample / elapsed


async def drain(tmp: Path, n: int, sample: int) -> dict[str, float]:
    pki = make_pki(tmp / "pki")
    broker = Broker(tmp, pki)
    broker.start()
    queue = RecordQueue(QueueSettings(str(tmp / "q.db"), str(tmp / "q.key"), max_bytes=1 << 34), lambda e: None)
    try:
        fill_s = await asyncio.to_thread(fill, queue, n)
        raw_rate = await raw_gmqtt(broker, pki.client("gw-1"), sample)
        settings = UplinkSettings("127.0.0.1", broker.port, "localhost", "gw-1", pki.client("gw-1"), window=64)
        uplink = Uplink(settings, queue, lambda e: None)
        tasks = [asyncio.create_task(queue.run()), asyncio.create_task(uplink.run())]

        async def live() -> None:  # 30 observations per second keep arriving
            i = n
            while True:
                for _ in range(3):
                    queue.offer(observation(i))
                    i += 1
                await asyncio.sleep(0.1)

        tasks.append(asyncio.create_task(live()))
        t0 = time.perf_counter()
        while (await queue.stats()).records.get("telemetry", 0) > 3 * 30 or uplink.sent_rows == 0:
            await asyncio.sleep(0.5)
        drain_s = time.perf_counter() - t0
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        with contextlib.suppress(Exception):
            queue.close()
        broker.stop()
    return {"observations": n, "fill_s": fill_s, "drain_s": drain_s, "drain_obs_s": n / drain_s,
            "raw_obs_s": raw_rate, "ratio": (n / drain_s) / raw_rate}  # fmt: skip


def measure(n: int, sample: int = 20_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bedside-drain-") as d:
        return asyncio.run(drain(Path(d), n, sample))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--observations", type=int, default=7_800_000)
    args = parser.parse_args()
    r = measure(args.observations)
    print(f"filled {r['observations']:,} observations into the store in {r['fill_s']:.1f} s")
    print(f"drained them over mTLS 1.3 to Mosquitto in {r['drain_s']:.1f} s "
          f"({r['drain_obs_s']:,.0f} obs/s) with a 30 obs/s live stream running")  # fmt: skip
    print(f"raw gmqtt, one QoS 1 message per observation: {r['raw_obs_s']:,.0f} obs/s")
    print(f"ratio {r['ratio']:.0f}x")


if __name__ == "__main__":
    main()
