"""The hospital side of the bench: a broker consumer with its own client certificate
(CN=tail: read-only by the broker's ACL), recording each alarm event and observation
with the wall-clock time it arrived.

It keeps a persistent session (QoS 1, session expiry one hour) and the bench broker
keeps its state across a restart, so what the gateway delivers while the consumer is
reconnecting after a `broker_up` is queued for it rather than lost by the bench.
Duplicates are recorded as they arrive; the checker deduplicates by obs_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import cbor2
import gmqtt

from appliance.core.model import AlarmEvent, Observation, RecordFormatError, to_json_dict
from appliance.queue.records import decode_batch
from appliance.uplink.envelope import batches_of
from appliance.uplink.gmqtt_adapter import close_client
from appliance.uplink.tls import client_context
from hil.broker import Broker
from hil.suite.check import Event

__all__ = ["Consumer", "wait_for_gateway"]


class Consumer:
    def __init__(self, broker: Broker, client_id: str = "hil-suite") -> None:
        self.broker = broker
        self.client_id = client_id
        self.events: list[Event] = []
        self.bad = 0  # payloads that did not decode (counted, shown in the report)
        self.obs_ids: set[str] = set()  # every observation seen (the drain asks)
        self._client: Any = None

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        now = time.time()
        if "/status" in topic or topic.endswith("/cmd"):
            return 0
        try:
            records = [r for b in batches_of(cbor2.loads(payload)) for r in decode_batch(b)]
        except (RecordFormatError, ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
            self.bad += 1
            return 0
        for record in records:
            if isinstance(record, AlarmEvent):
                self.events.append(Event(now, "broker", "alarm", to_json_dict(record)))
            elif isinstance(record, Observation):
                data = to_json_dict(record)
                data["received_t"] = record.received.timestamp()
                data["plane"] = topic.rpartition("/")[2]  # telemetry or quarantine
                self.obs_ids.add(record.obs_id)
                self.events.append(Event(now, "broker", "obs", data))
        return 0

    async def start(self) -> None:
        client = gmqtt.Client(self.client_id, clean_session=False, session_expiry_interval=3600)
        client.on_message = self._on_message
        await client.connect("127.0.0.1", self.broker.port, ssl=client_context(self.broker.pki.client("tail")))
        client.subscribe("bedside/#", qos=1)
        self._client = client
        await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await close_client(self._client)
            self._client = None


async def wait_for_gateway(broker: Broker, timeout_s: float) -> None:
    """Until the gateway's retained status is at the broker (its uplink connected);
    TimeoutError after `timeout_s`."""
    seen = asyncio.Event()

    def on_message(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        seen.set()
        return 0

    client = gmqtt.Client("hil-wait")
    client.on_message = on_message
    await client.connect("127.0.0.1", broker.port, ssl=client_context(broker.pki.client("tail")))
    try:
        client.subscribe("bedside/v1/+/status", qos=1)
        await asyncio.wait_for(seen.wait(), timeout_s)
    finally:
        await close_client(client)
