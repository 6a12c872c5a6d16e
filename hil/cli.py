"""`bedside hil …`: bench commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers import registry
from drivers.family import DeviceFamily

if TYPE_CHECKING:
    from hil.simulate import SimConfig

__all__ = ["add_parser", "run_hil"]

_LINE_SIMULATOR = "hil.simulate:simulate"
_RADIO_SIMULATOR = "hil.ble_bench:run_ble_bench"


class HilUsageError(ValueError):
    pass


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """`bedside hil`: one simulator per family that has one (DeviceFamily.simulator)."""
    hil = sub.add_parser("hil", help="hardware-in-the-loop bench")
    hil_sub = hil.add_subparsers(dest="hil_command", required=True)
    sim = hil_sub.add_parser("simulate", help="simulate a device on a pty or serial port")
    sim.add_argument("device", choices=[f.name for f in _simulated(_LINE_SIMULATOR)])
    sim.add_argument(
        "--port", required=True, help="symlink path to create (pty), a real serial port, or tcp://HOST:PORT (hl7)"
    )
    sim.add_argument("--scenario", default="steady")
    sim.add_argument(
        "--variant",
        default="radical7",
        help="Masimo model (rad8, radical5, radical7, rad7) or MEDIBUS model (evita4, evitaxl, v500, apollo)",
    )
    sim.add_argument("--format", dest="data_format", type=int, default=8, choices=(2, 7, 8))
    sim.add_argument("--device-tz", default="UTC")
    sim.add_argument("--clock-offset", type=float, default=0.0, help="device clock error in seconds")
    sim.add_argument("--garbage-every", type=float, default=0.0, help="inject garbage every S seconds")
    sim.add_argument("--cable-pull-every", type=float, default=0.0, help="pull the cable every S seconds")
    sim.add_argument("--cable-down", type=float, default=3.0, help="seconds the cable stays out")
    sim.add_argument("--speed", type=float, default=1.0, help="run the scenario this much faster")
    sim.add_argument("--rate", type=float, default=0.0, help="frames per second (default: the device's own)")
    sim.add_argument("--replay", default="", help="intellivue: answer polls from a monitor->host capture")
    sim.add_argument("--reboot-every", type=float, default=0.0, help="intellivue: reboot mid-poll every S seconds")
    sim.add_argument("--reboot-down", type=float, default=15.0, help="intellivue: seconds a reboot takes")
    sim.add_argument("--duration", type=float, default=None)
    for family in _simulated(_RADIO_SIMULATOR):
        radio = hil_sub.add_parser(
            family.name, help="a simulated BLE peripheral read by the gateway's BLE link (JSON lines)"
        )
        radio.add_argument("device", choices=sorted(p.removeprefix(f"{family.name}-") for p in family.protocols))
        radio.add_argument("--scenario", default="steady")
        radio.add_argument("--period", type=float, default=1.0, help="seconds between measurements")
        radio.add_argument("--leave-every", type=float, default=0.0, help="leave radio range every S seconds")
        radio.add_argument("--away", type=float, default=5.0, help="seconds out of range")
        radio.add_argument("--duration", type=float, default=None)
    return hil


# The order `bedside hil simulate --help` has always listed; families added later follow.
_ORDER = ("masimo", "nonin", "intellivue", "datex", "medibus", "hl7")


def _simulated(hook: str) -> list[DeviceFamily]:
    found = [f for f in registry.FAMILIES if f.simulator == hook]
    return sorted(found, key=lambda f: _ORDER.index(f.name) if f.name in _ORDER else len(_ORDER))


def _run_radio(args: argparse.Namespace) -> int:
    from hil.ble_bench import BleBenchConfig, run_ble_bench
    from hil.scenarios import SCENARIOS

    if args.scenario not in SCENARIOS:
        print(f"bedside: --scenario: unknown {args.scenario!r}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    cfg = BleBenchConfig(args.device, args.scenario, args.period, args.leave_every, args.away, args.duration)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_ble_bench(cfg))
    return 0


def sim_config(args: argparse.Namespace) -> SimConfig:
    from hil.scenarios import SCENARIOS
    from hil.simulate import SimConfig

    if args.device == "medibus" and args.variant == "radical7":  # the Masimo default: pick a Dräger one
        args.variant = "evita4"
    if args.scenario not in SCENARIOS:
        raise HilUsageError(f"--scenario: unknown {args.scenario!r}; known: {', '.join(SCENARIOS)}")
    try:
        tz = ZoneInfo(args.device_tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise HilUsageError(f"--device-tz: unknown time zone {args.device_tz!r}") from None
    if args.device == "medibus" and args.variant not in ("evita4", "evitaxl", "v500", "apollo"):
        raise HilUsageError(f"--variant: MEDIBUS model must be evita4, evitaxl, v500 or apollo, not {args.variant!r}")
    if args.replay and not os.path.isfile(args.replay):
        raise HilUsageError(f"--replay: no such file {args.replay!r}")
    if args.replay and args.device != "intellivue":
        raise HilUsageError("--replay: only the intellivue simulator replays captures")
    return SimConfig(
        device=args.device,
        port=args.port,
        scenario=args.scenario,
        variant=args.variant,
        data_format=args.data_format,
        device_tz=tz,
        clock_offset_s=args.clock_offset,
        garbage_every_s=args.garbage_every,
        cable_pull_every_s=args.cable_pull_every,
        cable_down_s=args.cable_down,
        rate_hz=args.rate,
        time_scale=args.speed,
        replay=args.replay,
        reboot_every_s=args.reboot_every,
        reboot_down_s=args.reboot_down,
        baud=_baud(args),
    )


def _baud(args: argparse.Namespace) -> int:
    if args.device == "medibus":
        from drivers.medibus.codec import PROFILES

        return PROFILES.get(args.variant, (19200, "E"))[0]
    return {"intellivue": 115200, "datex": 19200}.get(args.device, 9600)


def run_hil(args: argparse.Namespace) -> int:
    from hil.simulate import simulate

    if getattr(args, "hil_command", "simulate") != "simulate":
        return _run_radio(args)
    try:
        cfg = sim_config(args)
    except HilUsageError as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(simulate(cfg, args.duration))
    return 0
