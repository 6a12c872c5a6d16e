"""Alarm latency: last byte of the triggering frame written on a pty -> annunciate().

Run: .venv/bin/python -m tests.bench.bench_alarm_latency [--samples N]

What production does: eight devices on ONE bed (the measured oximeter and 7
further simulated devices, `bedside hil simulate` in separate processes: Masimo
lines at 9600-baud line rate, 8 lines/s each, and Nonin format #2 packets), the
shipped default rule set, the durable store (queue) and the JSON-lines sink in
the path. The time is taken when the output chain is told to sound the high
priority (annunciate(), what drives the buzzer), not when the alarm event is
logged. Each onset is a desaturation (SpO2 70) after a normal line; the latched
alarm is acknowledged before the next. The measured port is driven from this
process so both ends share one clock. The floor is the bare pty write ->
event-loop read callback latency, measured in the same run under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import tty
from pathlib import Path

from appliance.config import parse_config
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from rules.engine import Ack, Annunciation
from rules.outputs import MemoryOutput
from rules.spec import DEFAULT_RULES_PATH, load_rules
from tests.bench.disk import disk_tempdir

LOAD_MASIMO = 4
LOAD_NONIN = 3
LOAD_DEVICES = LOAD_MASIMO + LOAD_NONIN
LINE_RATE_HZ = 8.0  # ~120-byte lines at 960 bytes/s
BED = "ICU-1"


class SignallingOutput(MemoryOutput):
    """Marks the moment the chain asks for the high-priority sound."""

    def __init__(self) -> None:
        super().__init__("bench")
        self.arrived = asyncio.Event()
        self.sounded_at = 0.0

    def annunciate(self, annunciation: Annunciation) -> None:
        super().annunciate(annunciation)
        if annunciation.audible == "high" and not self.arrived.is_set():
            self.sounded_at = time.perf_counter()
            self.arrived.set()


def line(spo2: int) -> bytes:
    stamp = time.strftime("%m/%d/%y %H:%M:%S", time.gmtime())
    return f"{stamp} SPO2={spo2:03d}% BPM=070 PI=02.00% ALARM=0000 EXC=000800\r\n".encode()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Floor:
    """Bare pty write -> event-loop read callback, on the gateway's own loop."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.slave, False)
        self.got: asyncio.Queue[float] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(self.slave, self._readable)

    def _readable(self) -> None:
        os.read(self.slave, 4096)
        self.got.put_nowait(time.perf_counter())

    async def sample(self) -> float:
        os.write(self.master, line(70))
        t0 = time.perf_counter()
        return await self.got.get() - t0

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.slave)
        os.close(self.master)
        os.close(self.slave)


async def alarm_latency(workdir: Path, samples: int) -> tuple[list[float], list[float], int]:
    from hil.simulate import PtyPort

    port = PtyPort(workdir / "measured")
    port.open()
    devices = [f'[[devices]]\nid = "measured"\nprotocol = "masimo"\nport = "{workdir / "measured"}"\n']
    load_args: list[list[str]] = []
    for i in range(LOAD_DEVICES):
        protocol = "masimo" if i < LOAD_MASIMO else "nonin-2"
        devices.append(f'[[devices]]\nid = "load{i}"\nprotocol = "{protocol}"\nport = "{workdir / f"load{i}"}"\n')
        extra = ["--rate", str(LINE_RATE_HZ), "--variant", "rad7"] if i < LOAD_MASIMO else ["--format", "2"]
        load_args.append([protocol.split("-", maxsplit=1)[0], "--port", str(workdir / f"load{i}"), *extra])
    cfg = parse_config(
        f'[gateway]\nbed_id = "{BED}"\nregistry_path = "{workdir / "reg.json"}"\nlog_level = "warning"\n'
        f'[sink]\njsonl_path = "{workdir / "records.jsonl"}"\n'
        f'[queue]\npath = "{workdir / "store.db"}"\nkey_path = "{workdir / "store.key"}"\n'
        # Eight oximeters at one bed: the site says which one the rules trust first.
        '[arbiter.precedence]\nMDC_PULS_OXIM_SAT_O2 = ["measured"]\n' + "".join(devices)
    )
    out = SignallingOutput()
    gw = Gateway(cfg, notifier=Notifier({}), ruleset=load_rules(DEFAULT_RULES_PATH), outputs=[out])
    load = [
        subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "hil", "simulate", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for args in load_args
    ]
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    latencies: list[float] = []
    floor_samples: list[float] = []
    floor = Floor()
    try:
        deadline = time.monotonic() + 20
        while not all(link.connected for link in gw.links.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # load flowing
        load_obs_start = gw.counts["observation"]
        for _ in range(samples):
            port.write(line(97))
            await asyncio.sleep(0.03)
            gw.alarms.command(Ack(BED))  # the latched desaturation and anything else sounding
            out.arrived.clear()
            port.write(line(70))
            t0 = time.perf_counter()
            # Wait without spinning: a busy bench would steal the CPU the kernel's
            # tty work needs and measure itself.
            await asyncio.wait_for(out.arrived.wait(), 5)
            latencies.append(out.sounded_at - t0)
            await asyncio.sleep(0.02)
            floor_samples.append(await floor.sample())
            await asyncio.sleep(0.02)
        load_obs = gw.counts["observation"] - load_obs_start
    finally:
        floor.close()
        stop.set()
        await runner
        for p in load:
            p.terminate()
            p.wait(5)
        port.close()
    return latencies, floor_samples, load_obs


async def measure(samples: int) -> dict[str, float]:
    with disk_tempdir(prefix="bedside-bench-") as tmp:
        latencies, floor, load_obs = await alarm_latency(Path(tmp), samples)
    return {
        "samples": samples,
        "alarm_p50_ms": pct(latencies, 0.5) * 1e3,
        "alarm_p99_ms": pct(latencies, 0.99) * 1e3,
        "floor_p50_ms": pct(floor, 0.5) * 1e3,
        "floor_p99_ms": pct(floor, 0.99) * 1e3,
        "alarm_mean_ms": statistics.mean(latencies) * 1e3,
        "load_observations": load_obs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    import uvloop

    r = uvloop.run(measure(args.samples))
    print(f"alarm latency over {args.samples} onsets, one bed with {LOAD_DEVICES} further devices at line rate "
          f"({r['load_observations']} load observations meanwhile):")  # fmt: skip
    print(f"  pty byte -> annunciate(high): p50 {r['alarm_p50_ms']:.3f} ms, p99 {r['alarm_p99_ms']:.3f} ms")
    print(
        f"  bare pty write -> read, same loop and load: p50 {r['floor_p50_ms']:.3f} ms, p99 {r['floor_p99_ms']:.3f} ms"
    )
    print(f"  ratio p50 {r['alarm_p50_ms'] / r['floor_p50_ms']:.1f}x, p99 {r['alarm_p99_ms'] / r['floor_p99_ms']:.1f}x")


if __name__ == "__main__":
    main()
