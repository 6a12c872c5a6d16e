"""`bedside hil …`: bench commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers import registry
from drivers.family import DeviceFamily
from hil.bench import SimUsageError as HilUsageError

if TYPE_CHECKING:
    from hil.simulate import SimConfig

__all__ = ["add_parser", "run_hil"]

# Which command a family's simulator gets is read off its transports, not its simulator:
# resolving hooks imports every simulator (and the radio stack), and the command line is
# built for `bedside run` too. Radio devices get their own command; the others share
# `hil simulate` (a pty, a real serial port or a listener's tcp:// address).
_RADIO = "radio"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """`bedside hil`: one simulator per family that has one (DeviceFamily.simulator)."""
    hil = sub.add_parser("hil", help="hardware-in-the-loop bench")
    hil_sub = hil.add_subparsers(dest="hil_command", required=True)
    sim = hil_sub.add_parser("simulate", help="simulate a device on a pty or serial port")
    sim.add_argument("device", choices=[f.name for f in _simulated(line=True)], help="the device family to simulate")
    sim.add_argument(
        "--port", required=True, help="symlink path to create (pty), a real serial port, or tcp://HOST:PORT (hl7)"
    )
    sim.add_argument("--scenario", default="steady", help=f"vital-sign trajectory: {', '.join(_scenarios())}")
    sim.add_argument(
        "--variant",
        default="radical7",
        help="Masimo model (rad8, radical5, radical7, rad7) or MEDIBUS model (evita4, evitaxl, v500, apollo)",
    )
    sim.add_argument(
        "--format", dest="data_format", type=int, default=8, choices=(2, 7, 8), help="nonin: data format (default 8)"
    )
    sim.add_argument("--device-tz", default="UTC", help="zone of the simulated device clock (default UTC)")
    sim.add_argument("--clock-offset", type=float, default=0.0, help="device clock error in seconds")
    sim.add_argument("--garbage-every", type=float, default=0.0, help="inject garbage every S seconds")
    sim.add_argument("--cable-pull-every", type=float, default=0.0, help="pull the cable every S seconds")
    sim.add_argument("--cable-down", type=float, default=3.0, help="seconds the cable stays out")
    sim.add_argument("--speed", type=float, default=1.0, help="run the scenario this much faster")
    sim.add_argument("--rate", type=float, default=0.0, help="frames per second (default: the device's own)")
    sim.add_argument("--replay", default="", help="intellivue: answer polls from a monitor->host capture")
    sim.add_argument("--reboot-every", type=float, default=0.0, help="intellivue: reboot mid-poll every S seconds")
    sim.add_argument("--reboot-down", type=float, default=15.0, help="intellivue: seconds a reboot takes")
    sim.add_argument("--duration", type=float, default=None, help="seconds, then exit (default: until Ctrl-C)")
    for family in _simulated(line=False):
        kind = family.name.upper()
        radio = hil_sub.add_parser(
            family.name, help=f"a simulated {kind} peripheral read by the gateway's {kind} link (JSON lines)"
        )
        radio.add_argument(
            "device",
            choices=sorted(p.removeprefix(f"{family.name}-") for p in family.protocols),
            help="the health profile to simulate",
        )
        radio.add_argument("--scenario", default="steady", help=f"vital-sign trajectory: {', '.join(_scenarios())}")
        radio.add_argument("--period", type=float, default=1.0, help="seconds between measurements")
        radio.add_argument("--leave-every", type=float, default=0.0, help="leave radio range every S seconds")
        radio.add_argument("--away", type=float, default=5.0, help="seconds out of range")
        radio.add_argument("--duration", type=float, default=None, help="seconds, then exit (default: until Ctrl-C)")
    from hil.suite.cli import add_run_parser  # argparse and the suite format only

    add_run_parser(hil_sub)
    return hil


def _scenarios() -> list[str]:
    from hil.scenarios import SCENARIOS

    return list(SCENARIOS)


# The order `bedside hil simulate --help` has always listed; families added later follow.
_ORDER = ("masimo", "nonin", "intellivue", "datex", "medibus", "hl7")


def _simulated(line: bool) -> list[DeviceFamily]:
    found = [f for f in registry.FAMILIES if f.simulator and (f.transports[0].kind != _RADIO) == line]
    return sorted(found, key=lambda f: _ORDER.index(f.name) if f.name in _ORDER else len(_ORDER))


class _RadioCommand(Protocol):
    """A radio family's simulator runs its own `bedside hil NAME` command."""

    def run_command(self, args: argparse.Namespace) -> int: ...


def _radio_sim(family: DeviceFamily) -> _RadioCommand:
    from hil.bench import simulator_for

    sim = simulator_for(family)
    if not hasattr(sim, "run_command"):
        raise TypeError(f"{family.simulator}: a radio family's simulator needs run_command")
    return cast("_RadioCommand", sim)


def sim_config(args: argparse.Namespace) -> SimConfig:
    """The settings for `hil simulate`, with the device family's defaults and refusals."""
    from hil.scenarios import SCENARIOS
    from hil.simulate import SimConfig, line_simulator

    sim = line_simulator(args.device)
    if args.scenario not in SCENARIOS:
        raise HilUsageError(f"--scenario: unknown {args.scenario!r}; known: {', '.join(SCENARIOS)}")
    try:
        tz = ZoneInfo(args.device_tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise HilUsageError(f"--device-tz: unknown time zone {args.device_tz!r}") from None
    cfg = sim.prepare(
        SimConfig(
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
        )
    )
    if args.replay and not os.path.isfile(args.replay):
        raise HilUsageError(f"--replay: no such file {args.replay!r}")
    if args.replay and not sim.replays:
        raise HilUsageError(f"--replay: the {args.device} simulator replays no captures")
    return cfg


def run_hil(args: argparse.Namespace) -> int:
    from hil.simulate import simulate

    command = getattr(args, "hil_command", "simulate")
    if command == "run":
        from hil.suite.cli import run_suite_command

        return run_suite_command(args)
    if command != "simulate":
        from hil.bench import family_named

        return _radio_sim(family_named(command)).run_command(args)
    try:
        cfg = sim_config(args)
    except HilUsageError as exc:
        print(f"bedside: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(simulate(cfg, args.duration))
    return 0
