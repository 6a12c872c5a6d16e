"""The journal's two streams to the broker: `audit` and `clinical` topics.

One publish in flight per stream, in order: up to `BATCH` rows per publish, the
rows marked delivered (audit) or deleted (clinical) only after the broker's
PUBACK, so a lost connection resends them (a consumer sees an exact duplicate at
most; `bedside audit verify` skips those, FHIR PUTs are idempotent). Payloads:

- `…/audit`: `{"v": 1, "gw": <gateway id>, "entries": [audit entry, …]}` (JSON)
- `…/clinical`: a FHIR R4 transaction Bundle (application/fhir+json)

It rides the uplink's connection (`send` returns None while there is none).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Final

from appliance.clinical.fhir import transaction_bundle
from appliance.clinical.journal import AUDIT, CLINICAL, Journal

__all__ = ["BATCH", "AuditPublisher", "Send", "audit_payload"]

log = logging.getLogger(__name__)
BATCH: Final = 64
ACK_TIMEOUT_S: Final = 15.0
PUBACK_OK: Final = frozenset({0x00, 0x10})
IDLE_POLL_S: Final = 0.2  # connected, nothing new: how soon a new row goes out
OFFLINE_POLL_S: Final = 2.0  # no connection: rows wait in the journal anyway
Send = Callable[[str, bytes, str], "asyncio.Future[int] | None"]  # (leaf, payload, content type)


def audit_payload(gw: str, lines: list[bytes]) -> bytes:
    entries = ",".join(line.decode() for line in lines)
    return f'{{"entries":[{entries}],"gw":{json.dumps(gw)},"v":1}}'.encode()


class AuditPublisher:
    def __init__(self, journal: Journal, send: Send, gateway_id: str) -> None:
        self.journal = journal
        self._send = send
        self.gateway_id = gateway_id
        self.published = {AUDIT: 0, CLINICAL: 0}
        self.offline = False  # the last try found no connection: poll the journal less often

    def _payload(self, stream: str, rows: list[tuple[int, bytes]]) -> tuple[bytes, str]:
        if stream == AUDIT:
            return audit_payload(self.gateway_id, [p for _, p in rows]), "application/json"
        bundle = transaction_bundle([json.loads(p) for _, p in rows])
        return json.dumps(bundle, separators=(",", ":")).encode(), "application/fhir+json"

    async def once(self, stream: str) -> bool:
        """Publish the oldest undelivered rows of a stream; True if some were delivered."""
        rows = await self.journal.pending(stream, BATCH)
        if not rows:
            return False
        payload, content_type = self._payload(stream, rows)
        fut = self._send(stream, payload, content_type)
        self.offline = fut is None
        if fut is None:
            return False
        try:
            async with asyncio.timeout(ACK_TIMEOUT_S):
                code = await fut
        except (ConnectionError, TimeoutError):
            return False  # sent again on the next connection
        if code not in PUBACK_OK:
            log.warning("broker refused %d %s rows: PUBACK reason 0x%02x", len(rows), stream, code)
            return False
        await self.journal.delivered(stream, [key for key, _ in rows])
        self.published[stream] += len(rows)
        return True

    async def run(self) -> None:
        while True:
            sent = await self.once(AUDIT)
            sent = await self.once(CLINICAL) or sent
            if not sent:
                await asyncio.sleep(OFFLINE_POLL_S if self.offline else IDLE_POLL_S)
