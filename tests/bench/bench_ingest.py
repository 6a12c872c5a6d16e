"""Ingest: CPU share and RSS of the gateway process at real line rates.

Run: .venv/bin/python -m tests.bench.bench_ingest [--duration 300] [--profile]

Eight serial devices on one bed, each a `bedside hil simulate` process on its own
pty, paced as the devices send (four Masimo Rad-7 at 8 lines/s, ~120-byte lines:
the line rate of 9600 baud; four Nonin #2 at 75 frames/s), plus four BLE sensors
(heart rate, continuous SpO2, thermometer, blood pressure) on the simulated radio
read through the gateway's bleak link, the shipped default rules and the JSON-lines
sink on. The gateway runs in a child process started the way `bedside run` starts
(`run_child` below: the same config load, start-up checks, logging and uvloop; only
the BLE backend is the simulated radio, whose peripherals then live in the same
process and are counted against it). CPU is the child's user+system time from
/proc over the measured window; RSS its VmRSS sampled every second.

Ratios from the same run: the child's CPU per observation against the decode-only
cost of the same kind of bytes (ingest_hot, in this process), and the RSS growth
from the first to the last minute of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.disk import disk_tempdir
from tests.bench.ingest_hot import measure as hot_measure

MASIMO = 4
NONIN = 4
MASIMO_RATE_HZ = 8.0
BLE = (
    ("hr", "ble-heart-rate", "HeartRateSim"),
    ("plx", "ble-plx-continuous", "PlxContinuousSim"),
    ("temp", "ble-temperature", "ThermometerSim"),
    ("bp", "ble-blood-pressure", "BloodPressureSim"),
)
TICKS = os.sysconf("SC_CLK_TCK")


def ble_address(i: int) -> str:
    return f"C0:FF:EE:00:10:{i:02X}"


def config_text(workdir: Path, control: bool = True, queue: bool = False) -> str:
    devices = []
    for i in range(MASIMO + NONIN):
        protocol = "masimo" if i < MASIMO else "nonin-2"
        devices.append(f'[[devices]]\nid = "s{i}"\nprotocol = "{protocol}"\nport = "{workdir / f"s{i}"}"\n')
    for i, (name, protocol, _) in enumerate(BLE):
        devices.append(f'[[devices]]\nid = "{name}"\nprotocol = "{protocol}"\nport = "ble:{ble_address(i)}"\n')
    sock = f'control_socket = "{workdir / "control.sock"}"\n' if control else ""
    store = f'[queue]\npath = "{workdir / "store.db"}"\nkey_path = "{workdir / "store.key"}"\n' if queue else ""
    return (
        f'[gateway]\nbed_id = "ICU-1"\nregistry_path = "{workdir / "reg.json"}"\nlog_level = "warning"\n'
        f'[sink]\njsonl_path = "{workdir / "records.jsonl"}"\n{store}[alarms]\n{sock}' + "".join(devices)
    )


def run_child(config_path: str, profile_path: str = "") -> int:
    """`bedside run` with the simulated radio (what cli.cmd_run does, plus BLE sims)."""
    import signal

    from appliance import cli
    from appliance.config import load_config
    from appliance.config_checks import startup_checks
    from appliance.gateway import Gateway
    from hil import ble_sim
    from hil.ble_radio import SimRadio

    config = load_config(config_path)
    startup_checks(config, config_path)
    cli._setup_logging(config.gateway.log_level)
    cli._install_loop()
    radio = SimRadio()
    sims = [radio.add(getattr(ble_sim, cls)(ble_address(i))) for i, (_, _, cls) in enumerate(BLE)]
    gateway = Gateway(config, radio=radio.backend())

    async def main() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(s.run()) for s in sims]
        try:
            return await gateway.run(stop)
        finally:
            for t in tasks:
                t.cancel()

    if profile_path:
        import cProfile

        prof = cProfile.Profile()
        clean = prof.runcall(asyncio.run, main())
        prof.dump_stats(profile_path)
    else:
        clean = asyncio.run(main())
    print(f"observations {gateway.counts['observation']}", file=sys.stderr)
    return 0 if clean else 1


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def observations(jsonl: Path) -> int:
    try:
        with jsonl.open("rb") as fh:
            return sum(b'"type":"observation"' in line for line in fh)
    except FileNotFoundError:
        return 0


def measure(
    duration_s: float = 300.0, warmup_s: float = 10.0, profile: str = "", queue: bool = False
) -> dict[str, float]:
    with disk_tempdir(prefix="bedside-ingest-") as tmp:
        work = Path(tmp)
        cfg = work / "gateway.toml"
        cfg.write_text(config_text(work, queue=queue))
        sims = []
        for i in range(MASIMO + NONIN):
            if i < MASIMO:
                extra = ["masimo", "--rate", str(MASIMO_RATE_HZ), "--variant", "rad7"]
            else:
                extra = ["nonin", "--format", "2"]
            sims.append(
                subprocess.Popen(
                    [sys.executable, "-m", "appliance.cli", "hil", "simulate", *extra, "--port", str(work / f"s{i}")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 20
        while not all((work / f"s{i}").exists() for i in range(len(sims))) and time.monotonic() < deadline:
            time.sleep(0.1)
        args = [sys.executable, "-m", "tests.bench.bench_ingest", "--child", str(cfg)]
        if profile:
            args += ["--profile-out", profile]
        child = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(warmup_s)
            cpu0, t0, obs0 = cpu_s(child.pid), time.monotonic(), observations(work / "records.jsonl")
            rss: list[tuple[float, float]] = []
            while time.monotonic() - t0 < duration_s:
                time.sleep(1.0)
                rss.append((time.monotonic() - t0, rss_mb(child.pid)))
                if child.poll() is not None:
                    raise RuntimeError(f"gateway exited early: {child.stderr.read() if child.stderr else ''}")
            cpu1, t1 = cpu_s(child.pid), time.monotonic()
            obs1 = observations(work / "records.jsonl")
        finally:
            child.terminate()
            child.communicate(timeout=30)
            for p in sims:
                p.terminate()
                p.wait(5)
    window = t1 - t0
    n_obs = max(obs1 - obs0, 1)
    minute = min(60.0, window / 3)
    first = [r for t, r in rss if t <= minute]
    last = [r for t, r in rss if t >= window - minute]
    hot = hot_measure(lines=600, repeat=3)
    per_obs_us = (cpu1 - cpu0) / n_obs * 1e6
    return {
        "window_s": window,
        "cpu_pct": (cpu1 - cpu0) / window * 100,
        "obs_per_s": n_obs / window,
        "cpu_per_obs_us": per_obs_us,
        "decode_us": hot["decode_us"],
        "cpu_per_obs_ratio": per_obs_us / hot["decode_us"],
        "rss_max_mb": max(r for _, r in rss),
        "rss_first_mb": max(first),
        "rss_last_mb": max(last),
        "rss_growth_ratio": max(last) / max(first),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=300.0, help="measured seconds (after a 10 s warm-up)")
    parser.add_argument("--queue", action="store_true", help="also the durable store (SQLite) in the path")
    parser.add_argument("--profile", default="", help="cProfile the gateway's main thread into this file")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.exit(run_child(args.child, args.profile_out))
    r = measure(args.duration, profile=args.profile, queue=args.queue)
    print(
        f"gateway process, {MASIMO + NONIN} serial devices at line rate + {len(BLE)} BLE sensors, "
        f"JSON-lines sink on{', store on' if args.queue else ''}, {r['window_s']:.0f} s:"
    )
    print(f"  CPU {r['cpu_pct']:.2f} % of one core, {r['obs_per_s']:.1f} observations/s")
    print(
        f"  {r['cpu_per_obs_us']:.0f} us CPU per observation = {r['cpu_per_obs_ratio']:.1f}x decode-only "
        f"({r['decode_us']:.1f} us, same bytes, same run)"
    )
    print(
        f"  RSS max {r['rss_max_mb']:.1f} MB; first minute {r['rss_first_mb']:.1f} MB, last minute "
        f"{r['rss_last_mb']:.1f} MB ({r['rss_growth_ratio']:.3f}x)"
    )


if __name__ == "__main__":
    main()
