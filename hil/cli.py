"""`bedside hil …`: bench commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hil.scenarios import SCENARIOS
from hil.simulate import SimConfig, simulate

__all__ = ["run_hil"]


class HilUsageError(ValueError):
    pass


def sim_config(args: argparse.Namespace) -> SimConfig:
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
        from drivers.serial.medibus import PROFILES

        return PROFILES.get(args.variant, (19200, "E"))[0]
    return {"intellivue": 115200, "datex": 19200}.get(args.device, 9600)


def run_hil(args: argparse.Namespace) -> int:
    try:
        cfg = sim_config(args)
    except HilUsageError as exc:
        print(f"bedside: {exc}", file=__import__("sys").stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(simulate(cfg, args.duration))
    return 0
