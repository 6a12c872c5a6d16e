"""A gateway with a census: quarantined readings still drive the local alarms, and a
patient whose consent is withheld is still monitored; the store keeps each on its plane."""

from __future__ import annotations

import asyncio

import pytest

from appliance.clinical.census import Census
from appliance.clinical.files import save_json
from appliance.config import parse_config
from appliance.core.model import AlarmEvent, Observation
from appliance.gateway import Gateway
from appliance.registry import Registry
from appliance.sdnotify import Notifier
from hil.broker import free_port
from rules.outputs import MemoryOutput
from tests.appliance.clinical.adt_messages import event
from tests.integration.test_patient_mismatch import send

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("consent", ["", "R"])
async def test_quarantined_and_withheld_readings_still_raise_the_local_alarm(tmp_path, consent):
    port = free_port()
    census = Census()
    census.apply(event("A01", "P-1", "ICU^1^ICU-1", con=consent))
    save_json(tmp_path / "census.json", census.to_json())
    if consent:  # consent withheld, and the device paired: telemetry is withheld, not the alarm
        save_json(tmp_path / "consent.json", {"v": 1, "patients": {
            "P-1": {"state": "withheld", "source": "adt", "time_ms": 0}}})  # fmt: skip
        Registry(tmp_path / "reg.json").pair("h", "ICU-1", "P-1")
    config = parse_config(
        f'[gateway]\nbed_id = "ICU-1"\nregistry_path = "{tmp_path / "reg.json"}"\n'
        f'[queue]\npath = "{tmp_path / "q.db"}"\nkey_path = "{tmp_path / "q.key"}"\ncommit_interval_ms = 20\n'
        f'[clinical]\ncensus_path = "{tmp_path / "census.json"}"\nconsent_path = "{tmp_path / "consent.json"}"\n'
        f'[[devices]]\nid = "h"\nprotocol = "hl7"\nport = "tcp://127.0.0.1:{port}"\n'
    )
    out = MemoryOutput("m")
    gw = Gateway(config, notifier=Notifier({}), outputs=[out])
    seen: list[object] = []
    gw.subscribers.append(seen.append)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        await asyncio.sleep(0.3)  # the listener is up
        assert b"MSA|CA|M1" in await send(port, "M1", "P-1", 75)
        async with asyncio.timeout(10):
            while not any(isinstance(r, AlarmEvent) and r.rule_id == "spo2-desat" for r in seen):
                await asyncio.sleep(0.05)
        assert gw.queue is not None
        await gw.queue.flush()
        stats = await gw.queue.stats()
    finally:
        stop.set()
        await runner
    (obs,) = [r for r in seen if isinstance(r, Observation)]
    assert obs.value == 75.0 and any(a.audible == "high" for _, a in out.annunciations)  # the buzzer sounds
    if consent:
        assert (obs.patient_id, obs.quarantine, "consent_withheld" in obs.flags) == ("P-1", False, True)
        assert stats.records.get("withheld") == 1 and "telemetry" not in stats.records
    else:
        assert (obs.patient_id, obs.quarantine) == (None, True)
        assert stats.records.get("unpaired") == 1 and "telemetry" not in stats.records
