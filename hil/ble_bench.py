"""`bedside hil ble PROFILE`: a simulated BLE peripheral and the gateway's own BLE link.

Both run in this process on a simulated radio (there is no Bluetooth in the
bench VM); the link talks to the peripheral through bleak's public API and the
simulated backend, exactly as the gateway does. Every decoded reading and
technical event is printed as a JSON line; `--leave-every` takes the peripheral
out of range periodically so reconnects and stored-record catch-up can be
watched.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TextIO

from appliance.core.model import DeviceEvent, Reading, to_json_line
from drivers.ble.link import BleLink, BleTiming
from drivers.ble.profiles import PROFILES
from drivers.devices import LinkTiming
from hil.ble_radio import SimRadio
from hil.ble_sim import make_sim

__all__ = ["BleBenchConfig", "run_ble_bench"]

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
