"""A whole gateway reads Nonin #13 spot-check records on a pty: each record becomes
observations carrying the record's own time, however old (a record the device held
in memory for days), and a corrupt record in between costs only itself."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.config import parse_config
from appliance.core.model import Observation, TechnicalEvent
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from hil.nonin_sim import nonin_spot_record
from hil.scenarios import Vitals
from rules.outputs.console import MemoryOutput


async def test_a_gateway_reads_nonin_spot_records_on_a_pty(tmp_path: Any) -> None:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    text = (
        f'[gateway]\nbed_id = "ICU-N"\nregistry_path = "{tmp_path / "r.json"}"\n'
        f'[[devices]]\nid = "ox-1"\nprotocol = "nonin-13"\nport = "{port}"\nexclusive = false\ntimezone = "UTC"\n'
    )
    gw = Gateway(parse_config(text), notifier=Notifier({}), outputs=[MemoryOutput("m")])
    seen: list[Any] = []
    gw.subscribers.append(seen.append)
    old = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    recent = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
    stored = nonin_spot_record(Vitals(93, 101, 2.0), old.replace(tzinfo=None), from_memory=True)
    live = nonin_spot_record(Vitals(97, 64, 2.0), recent.replace(tzinfo=None))
    corrupt = bytearray(live)
    corrupt[-2] ^= 0xFF  # checksum
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(10):
            while not gw.links["ox-1"].connected:
                await asyncio.sleep(0.02)
            os.write(master, stored + bytes(corrupt) + live)
            while sum(isinstance(r, Observation) for r in seen) < 4:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await runner
        os.close(master)
        os.close(slave)
    obs = [(r.metric, r.value, r.time, r.quality) for r in seen if isinstance(r, Observation)]
    assert obs == [
        ("MDC_PULS_OXIM_PULS_RATE", 101.0, old, "valid"),
        ("MDC_PULS_OXIM_SAT_O2", 93.0, old, "valid"),
        ("MDC_PULS_OXIM_PULS_RATE", 64.0, recent, "valid"),
        ("MDC_PULS_OXIM_SAT_O2", 97.0, recent, "valid"),
    ]
    assert not any(isinstance(r, TechnicalEvent) and r.kind == "clock_skew" for r in seen)
    assert any(isinstance(r, TechnicalEvent) and r.kind == "bad_frame" for r in seen)
    assert gw.stats()["links"]["ox-1"]["frames_ok"] == 2
