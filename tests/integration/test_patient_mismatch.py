"""A sender's patient claim against the pairing, end to end: HL7 over MLLP/TCP into a
running gateway with a paired device and the shipped default rules (issue 17, item 3)."""

from __future__ import annotations

import asyncio

import pytest

from appliance.config import parse_config
from appliance.core.model import AlarmEvent, Observation
from appliance.gateway import Gateway
from appliance.registry import Registry
from appliance.sdnotify import Notifier
from drivers.hl7.mllp import frame
from hil.broker import free_port
from rules.outputs import MemoryOutput

pytestmark = pytest.mark.integration

MSG = (
    "MSH|^~\\&|S|F|||20260101120000||ORU^R01^ORU_R01|{id}|P|2.6|||AL|NE\r"
    "PID|||{pid}^^^HOSP^MR\rPV1||I|ICU^1^ICU-1\rOBR|1|||x|||20260101120000\r"
    "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|{value}|262688^MDC_DIM_PERCENT^MDC\r"
)


async def send(port: int, control_id: str, pid: str, value: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame(MSG.format(id=control_id, pid=pid, value=value).encode()))
        async with asyncio.timeout(5):
            return await reader.readuntil(b"\x1c\r")
    finally:
        writer.close()


async def test_a_reading_for_another_patient_is_quarantined_and_raises_the_technical_alarm(tmp_path):
    port = free_port()
    registry = tmp_path / "reg.json"
    Registry(registry).pair("h", "ICU-1", "P-1")
    config = parse_config(
        f'[gateway]\nbed_id = "ICU-1"\nregistry_path = "{registry}"\nregistry_poll_s = 0.1\n'
        f'[[devices]]\nid = "h"\nprotocol = "hl7"\nport = "tcp://127.0.0.1:{port}"\n'
    )
    out = MemoryOutput("m")
    gw = Gateway(config, notifier=Notifier({}), outputs=[out])
    seen: list[object] = []
    gw.subscribers.append(seen.append)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(10):
            while gw.context(config.devices[0]).patient_id != "P-1":
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the listener is up
        assert b"MSA|CA|M1" in await send(port, "M1", "P-1", 96)  # the paired patient
        assert b"MSA|CA|M2" in await send(port, "M2", "P-2", 80)  # someone else's reading
        async with asyncio.timeout(10):
            while not any(isinstance(r, AlarmEvent) and r.rule_id == "patient-mismatch" for r in seen):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await runner
    obs = [r for r in seen if isinstance(r, Observation) and r.metric == "MDC_PULS_OXIM_SAT_O2"]
    assert [(o.value, o.patient_id, o.quarantine) for o in obs] == [(96.0, "P-1", False), (80.0, "P-1", True)]
    # Invalid: the rule engine never judges it (80 % would be below the SpO2 limit).
    assert "patient_mismatch" in obs[1].flags and obs[1].quality == "invalid"
