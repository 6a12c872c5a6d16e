"""The MQTT payload around stored batches, and how rows are packed into publishes.

The published contract is docs/wire.md (schema: docs/wire.schema.json).

Version 4 is version 3 plus `boot`, the id of the gateway process start
(appliance/core/boot.py): `seq` restarts at 1 with every start, so (`gw`, `boot`,
`seq`) is what lets a consumer tell a restart from lost publishes.
Version 3 is version 2 with one time representation: every batch it carries is
store schema 2, whose event times are epoch milliseconds UTC like the
observation rows' (schema 1 had RFC 3339 strings in event dicts; the uplink
rewrites such rows with `records.to_current`). Version 2 carries a list of
store rows' batches (`batches`) in one publish: one publish per
3-observation row drained a 72 h backlog at ~11 rows/s (issue #15). Versions 1
(`batch`: one row) and 2 are still decoded, for consumers reading a broker that
holds messages from older gateways. Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import cbor2

from appliance.queue.schema import RecordClass

__all__ = [
    "CBOR",
    "JSON",
    "MAX_PUBLISH_BYTES",
    "MAX_ROWS_PER_PUBLISH",
    "PAYLOAD_VERSION",
    "batches_of",
    "encode",
    "pack",
]

PAYLOAD_VERSION: Final = 4
# MQTT 5 Content Type and Payload Format Indicator (0: bytes, 1: UTF-8) per topic kind.
CBOR: Final = {"content_type": "application/cbor", "payload_format_id": 0}
JSON: Final = {"content_type": "application/json", "payload_format_id": 1}
# Size bound of one publish: far under MQTT's 256 MB and Mosquitto's defaults,
# small enough that one lost connection resends little and a receiver's
# buffer stays modest; large enough that per-publish costs vanish.
MAX_PUBLISH_BYTES: Final = 128 * 1024
MAX_ROWS_PER_PUBLISH: Final = 512

Row = tuple[int, RecordClass, int, bytes]  # id, class, created_ms, batch payload


def encode(gateway_id: str, seq: int, cls: RecordClass, replay: bool, batches: Sequence[bytes], *, boot: str) -> bytes:
    return cbor2.dumps(
        {
            "v": PAYLOAD_VERSION,
            "gw": gateway_id,
            "boot": boot,
            "seq": seq,
            "cls": int(cls),
            "replay": replay,
            "batches": list(batches),
        }
    )


def batches_of(envelope: dict[str, Any]) -> list[bytes]:
    """The stored batches an envelope (v1 to v4) carries; KeyError/TypeError if malformed."""
    if envelope.get("v", 1) == 1:
        return [envelope["batch"]]
    batches = envelope["batches"]
    if not isinstance(batches, list):
        raise TypeError("batches is not a list")
    return batches


def pack(rows: Sequence[Row], connected_ms: int, max_publishes: int) -> list[list[Row]]:
    """Consecutive rows of one class and one replay state go in one publish, up to
    MAX_PUBLISH_BYTES and MAX_ROWS_PER_PUBLISH; an alarm goes alone (it must not
    wait for anything). At most `max_publishes` groups; the rows left over are
    a suffix of `rows` (they are fetched again)."""
    groups: list[list[Row]] = []
    size = 0
    for row in rows:
        _, cls, created_ms, payload = row
        last = groups[-1] if groups else None
        fits = (
            last is not None
            and cls is not RecordClass.ALARM
            and last[0][1] is cls
            and (last[0][2] < connected_ms) == (created_ms < connected_ms)
            and len(last) < MAX_ROWS_PER_PUBLISH
            and size + len(payload) <= MAX_PUBLISH_BYTES
        )
        if fits and last is not None:
            last.append(row)
            size += len(payload)
        elif len(groups) < max_publishes:
            groups.append([row])
            size = len(payload)
        else:
            break
    return groups
