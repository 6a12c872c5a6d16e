"""`bedside uplink tail`: a consumer for operators and tests.

Subscribes to `bedside/v1/+/…` (or one gateway) with its own client certificate
over the same TLS 1.3 policy, decodes each envelope (v1: one batch, v2: a
list of batches; see `appliance.uplink.envelope`) to canonical JSON lines,
and drops records whose id it has already printed (QoS 1 redelivery and
replayed backlog produce duplicates by design; obs_id makes them harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any, Final, TextIO

import cbor2
import gmqtt

from appliance.core.model import AlarmEvent, Observation, RecordFormatError, to_json_line
from appliance.queue.records import decode_batch
from appliance.uplink.envelope import batches_of
from appliance.uplink.tls import TlsFiles, client_context, preflight

__all__ = ["tail"]

# Ids remembered for de-duplication; oldest forgotten first.
MAX_SEEN_IDS: Final = 1_000_000


def _record_id(record: object) -> str | None:
    if isinstance(record, Observation):
        return record.obs_id
    if isinstance(record, AlarmEvent):
        return f"{record.alarm_id}:{record.state}:{record.priority}"
    return None


async def tail(
    host: str,
    port: int,
    server_hostname: str,
    tls: TlsFiles,
    out: TextIO,
    *,
    gateway: str = "+",
    count: int | None = None,
    duration_s: float | None = None,
) -> int:
    """Print records until `count` were printed or `duration_s` passed; returns how many."""
    cert = preflight(tls)
    cn = cert.subject.rfc4514_string().removeprefix("CN=")
    seen: OrderedDict[str, None] = OrderedDict()
    printed = 0
    done = asyncio.Event()

    def on_message(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        nonlocal printed
        if topic.endswith("/status") or topic.endswith("/cmd/response"):
            return 0
        try:
            envelope = cbor2.loads(payload)
            records = [r for batch in batches_of(envelope) for r in decode_batch(batch)]
        except (cbor2.CBORDecodeError, KeyError, TypeError, AttributeError, RecordFormatError):
            out.write('{"type":"error","detail":"undecodable batch on ' + topic + '"}\n')
            return 0
        for record in records:
            rid = _record_id(record)
            if rid is not None:
                if rid in seen:
                    continue
                seen[rid] = None
                if len(seen) > MAX_SEEN_IDS:
                    seen.popitem(last=False)
            out.write(to_json_line(record) + "\n")
            printed += 1
            if count is not None and printed >= count:
                done.set()
        out.flush()
        return 0

    client = gmqtt.Client(f"{cn}-tail")
    client.on_message = on_message
    await asyncio.wait_for(client.connect(host, port, ssl=client_context(tls)), 10)
    client.subscribe(f"bedside/v1/{gateway}/#", qos=1)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration_s):
                await done.wait()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 2)
    return printed
