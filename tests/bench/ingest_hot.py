"""The gateway's hot path on recorded bytes, against decode-only on the same bytes.

Used by bench_ingest (the in-process half of its figures), by its CI test, and as
the profile target:
    .venv/bin/python -m tests.bench.ingest_hot --profile
Eight serial devices on one bed as in bench_alarm_latency (four Masimo Radical-7
lines, four Nonin #2 packets), the shipped default rules, the JSON-lines sink on.
Decode-only is codec + normalizer with the same contexts: what any reader of these
bytes must do. The ratio says what the gateway adds per observation (arbiter,
rules, outputs, sinks, counters), independent of this machine's speed today.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from appliance.config import DeviceConfig, parse_config
from appliance.core.clock import MonotonicUTC
from appliance.core.model import Reading
from appliance.gateway import Gateway
from appliance.normalize import DeviceContext, Normalizer
from appliance.sdnotify import Notifier
from drivers.registry import make_codec
from hil.masimo_sim import masimo_line
from hil.nonin_sim import nonin_packet
from hil.scenarios import vitals_at
from rules.outputs import MemoryOutput
from tests.bench.disk import disk_tempdir

MASIMO = 4
NONIN = 4
CHUNK = 64  # bytes per read: a 9600-baud port delivers a few tens of bytes per wake


def captures(lines: int) -> list[tuple[str, bytes]]:
    """(protocol, bytes) per device; timestamps near now so no clock_skew path is taken."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    masimo = b"".join(masimo_line("radical7", now.replace(second=i % 60), vitals_at("steady", i)) for i in range(lines))
    nonin = b"".join(nonin_packet(2, vitals_at("steady", i / 3), pleth_phase=i) for i in range(lines // 3))
    return [("masimo", masimo)] * MASIMO + [("nonin-2", nonin)] * NONIN


def config_text(workdir: Path, protocols: list[str]) -> str:
    devices = "".join(
        f'[[devices]]\nid = "d{i}"\nprotocol = "{p}"\nport = "{workdir / f"d{i}"}"\n' for i, p in enumerate(protocols)
    )
    return (
        f'[gateway]\nbed_id = "ICU-1"\nregistry_path = "{workdir / "reg.json"}"\nlog_level = "warning"\n'
        f'[sink]\njsonl_path = "{workdir / "records.jsonl"}"\n' + devices
    )


def _cpu(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, items = float("inf"), 0
    for _ in range(repeat):
        t0 = time.process_time()
        items = fn()
        best = min(best, time.process_time() - t0)
    return best, items


def decode_only(devs: list[DeviceConfig], data: list[tuple[str, bytes]]) -> int:
    norm = Normalizer(max_clock_skew_s=300)
    received = datetime.now(UTC)
    n = 0
    for dev, (protocol, raw) in zip(devs, data, strict=True):
        codec = make_codec(protocol, dev.id, MonotonicUTC())
        ctx = DeviceContext(dev.id, protocol, "ICU-1", boot_id="bench")
        for i in range(0, len(raw), CHUNK):
            for ev in codec.feed(raw[i : i + CHUNK]):
                if isinstance(ev, Reading):
                    obs, _ = norm.normalize(ev, ctx, received)
                    n += obs is not None
    return n


def through_gateway(gw: Gateway, data: list[tuple[str, bytes]]) -> int:
    """Every device's bytes through its codec into Gateway.handle, the JSON-lines sink
    written (its thread's CPU counts: process time)."""
    before = gw.counts["observation"]
    devs = list(gw.config.devices)

    async def feed() -> None:
        for dev, (protocol, raw) in zip(devs, data, strict=True):
            codec = make_codec(protocol, dev.id, MonotonicUTC())
            for i in range(0, len(raw), CHUNK):
                for ev in codec.feed(raw[i : i + CHUNK]):
                    gw.handle(dev, ev)
            for sink in gw.sinks:
                await sink.flush()

    asyncio.run(feed())
    return gw.counts["observation"] - before


def measure(lines: int = 1500, repeat: int = 3) -> dict[str, float]:
    data = captures(lines)
    with disk_tempdir(prefix="bedside-ingest-") as tmp:
        cfg = parse_config(config_text(Path(tmp), [p for p, _ in data]))
        gw = Gateway(cfg, notifier=Notifier({}), outputs=[MemoryOutput("bench")])
        devs = list(cfg.devices)
        base_s, base_n = _cpu(lambda: decode_only(devs, data), repeat)
        gw_s, gw_n = _cpu(lambda: through_gateway(gw, data), repeat)
    return {
        "observations": gw_n,
        "decode_us": base_s / max(base_n, 1) * 1e6,
        "gateway_us": gw_s / max(gw_n, 1) * 1e6,
        "ratio": (gw_s / max(gw_n, 1)) / (base_s / max(base_n, 1)),
    }


def profile(lines: int) -> None:
    data = captures(lines)
    with disk_tempdir(prefix="bedside-ingest-") as tmp:
        cfg = parse_config(config_text(Path(tmp), [p for p, _ in data]))
        gw = Gateway(cfg, notifier=Notifier({}), outputs=[MemoryOutput("bench")])
        prof = cProfile.Profile()
        prof.enable()
        n = through_gateway(gw, data)
        prof.disable()
    print(f"{n} observations")
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1500)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profile(args.lines)
        return
    r = measure(args.lines)
    print(f"{r['observations']:.0f} observations, 8 serial devices on one bed, default rules, JSON-lines sink on")
    print(f"decode only (codec + normalizer): {r['decode_us']:.1f} us CPU per observation")
    print(f"through Gateway.handle          : {r['gateway_us']:.1f} us CPU per observation ({r['ratio']:.2f}x)")


if __name__ == "__main__":
    main()
