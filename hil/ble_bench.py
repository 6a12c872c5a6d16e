"""`bedside hil ble PROFILE`: a simulated BLE peripheral and the gateway's own BLE link.

Both run in this process on a simulated radio (there is no Bluetooth in the
bench VM); the link talks to the peripheral through bleak's public API and the
simulated backend, exactly as the gateway does. Every decoded reading and
technical event is printed as a JSON line; `--leave-every` takes the peripheral
out of range periodically so reconnects and stored-record catch-up can be
watched.

`simulator()` is the family's DeviceFamily.simulator hook: the BLE sensors of
`bedside demo`, on the demo's simulated radio, and the `bedside hil ble` command's run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, TextIO

from appliance.core.model import DeviceEvent, Reading, to_json_line
from drivers.ble.link import BleLink, BleTiming
from drivers.ble.profiles import PROFILES
from drivers.devices import LinkTiming
from hil.bench import DemoDevice, DemoEnv
from hil.ble_radio import SimRadio
from hil.ble_sim import ProfileSim, make_sim

__all__ = ["BleBenchConfig", "BleSim", "run_ble_bench", "simulator"]

ADDRESS = "C0:FF:EE:00:00:01"


@dataclass(frozen=True, slots=True)
class BleBenchConfig:
    profile: str
    scenario: str = "steady"
    period_s: float = 1.0
    leave_every_s: float = 0.0
    away_s: float = 5.0
    duration_s: float | None = None


async def run_ble_bench(cfg: BleBenchConfig, out: TextIO = sys.stdout) -> int:
    radio = SimRadio()
    sim = radio.add(make_sim(cfg.profile, ADDRESS, cfg.scenario, cfg.period_s))
    counts = {"readings": 0, "technical": 0}

    def emit(event: DeviceEvent) -> None:
        counts["readings" if isinstance(event, Reading) else "technical"] += 1
        out.write(to_json_line(event) + "\n")
        out.flush()

    timing = BleTiming(link=LinkTiming(stale_after_s=max(3.0, 3 * cfg.period_s), reopen_min_s=0.2, reopen_max_s=2.0))
    link = BleLink(f"sim-{cfg.profile}", PROFILES[cfg.profile], ADDRESS, emit, timing=timing, backend=radio.backend())

    async def wander() -> None:
        while cfg.leave_every_s:
            await asyncio.sleep(cfg.leave_every_s)
            sim.leave()
            await asyncio.sleep(cfg.away_s)
            sim.come_back()

    tasks = [asyncio.create_task(t) for t in (sim.run(), link.run(), wander())]
    try:
        await asyncio.wait(tasks, timeout=cfg.duration_s, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"{counts['readings']} readings, {counts['technical']} technical events", file=sys.stderr)
    return 0 if counts["readings"] else 1


@dataclass(frozen=True, slots=True)
class BleDemo:
    """A demo sensor: its profile, radio address, scenario and measurement period."""

    profile: str
    address: str
    scenario: str = "steady"
    period_s: float = 1.0
    wanders: bool = False  # leaves radio range now and then and keeps measuring


# The glucose meter wanders out of range now and then and keeps measuring; its readings
# arrive on return, once each.
AWAY_EVERY_S: Final = 20.0
AWAY_FOR_S: Final = 8.0


class BleSim:
    """BLE sensors on a simulated radio, read through bleak exactly as BlueZ devices would be."""

    demo = (
        DemoDevice("hr-strap-1", "ble-heart-rate", "ICU-8", BleDemo("heart-rate", "C0:FF:EE:00:08:01")),
        DemoDevice(
            "glucose-1", "ble-glucose", "ICU-9", BleDemo("glucose", "C0:FF:EE:00:09:01", period_s=3.0, wanders=True)
        ),
    )

    def port(self, device: DemoDevice, env: DemoEnv) -> str:
        settings: BleDemo = device.settings
        return f"ble:{settings.address}"

    def config(self, device: DemoDevice, port: str) -> dict[str, object]:
        return {"stale_after_s": 5.0, "reopen_max_s": 2.0}

    def run(self, device: DemoDevice, port: str, env: DemoEnv) -> Coroutine[Any, Any, None]:
        settings: BleDemo = device.settings
        # On the radio now, before the gateway's first scan.
        sim = env.radio.add(make_sim(settings.profile, settings.address, settings.scenario, settings.period_s))
        return _sensor(sim, settings.wanders, env.speed)

    def run_command(self, args: argparse.Namespace) -> int:
        """`bedside hil ble PROFILE` (the arguments hil.cli gives every radio family)."""
        from hil.scenarios import SCENARIOS

        if args.scenario not in SCENARIOS:
            print(f"bedside: --scenario: unknown {args.scenario!r}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
        cfg = BleBenchConfig(args.device, args.scenario, args.period, args.leave_every, args.away, args.duration)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(run_ble_bench(cfg))
        return 0


async def _sensor(sim: ProfileSim, wanders: bool, speed: float) -> None:
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(sim.run(speed))
        if wanders:
            tasks.create_task(_wander(sim, speed))


async def _wander(sim: ProfileSim, speed: float) -> None:
    """Take a sensor out of range and back, periodically."""
    while True:
        await asyncio.sleep(AWAY_EVERY_S / speed)
        sim.leave()
        await asyncio.sleep(AWAY_FOR_S / speed)
        sim.come_back()


def simulator() -> BleSim:
    return BleSim()
