"""Compact CBOR form of record batches for the store and the uplink.

Observations are dictionary-encoded per batch: metric, unit, device, bed,
patient and flag sets become small integers; a row's `time` is the millisecond
delta from the *previous row's* time (the first row's from the batch base `b`,
which is epoch milliseconds UTC), its `received` the delta from its own `time`;
the 128-bit obs_id is kept as 16 raw bytes. That is what gets a stored
observation under 40 bytes (sealed, on disk). Alarm and technical events are
rare and are stored as their JSON-lines dict in CBOR, except that their times
are epoch milliseconds UTC too (schema 2): one time representation in a batch
and on the wire (docs/wire.md). Schema 1 (times in those dicts as RFC 3339
strings) is still decoded, and `to_current` rewrites it. Times are kept to the
millisecond (device clocks are coarser than that; the gateway's receive stamp
is rounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import cbor2

from appliance.core.model import (
    AlarmEvent,
    Observation,
    Record,
    RecordFormatError,
    TechnicalEvent,
    parse_time,
    to_json_dict,
)
from appliance.core.vocab import Quality

__all__ = ["SCHEMA_VERSION", "decode_batch", "encode_batch", "epoch_ms", "merge_encoded", "to_current"]

SCHEMA_VERSION: Final = 2
_READABLE: Final = frozenset({1, SCHEMA_VERSION})
# A schema-1 batch without events differs from schema 2 only in `v`; canonical CBOR
# puts "v" then "x" last, so such a batch ends in exactly these bytes.
_V1_NO_EVENTS: Final = b"\x61v\x01\x61x\x80"
_V2_NO_EVENTS: Final = b"\x61v\x02\x61x\x80"
# The index is the wire code of a quality: the order is fixed.
_QUALITY: Final = (Quality.VALID, Quality.QUESTIONABLE, Quality.INVALID)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_KEYS: Final = ("time", "received", "device_time")


def epoch_ms(t: datetime) -> int:
    """Epoch milliseconds UTC, the one time representation of the wire."""
    # Naive times are taken as UTC: the gateway stamps aware UTC times everywhere.
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return round((t - _EPOCH).total_seconds() * 1000)


def _event_dict(record: Record) -> dict[str, Any]:
    raw = to_json_dict(record)
    for key in _TIME_KEYS:
        value = getattr(record, key, None)
        if isinstance(value, datetime):
            raw[key] = epoch_ms(value)
    return raw


class _Dict:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self._index: dict[Any, int] = {}

    def __call__(self, value: Any) -> int:
        i = self._index.get(value)
        if i is None:
            i = self._index[value] = len(self.items)
            self.items.append(value)
        return i


def encode_batch(records: Sequence[Record]) -> bytes:
    """A CBOR batch; observations compact, other records as dicts.

    Row: [obs_id, value, time - previous row's time (ms), received - time (ms),
    quality | quarantine<<2, term index, source index, flag-set index], with
    term = (metric, code, unit) and source = (device, bed, patient).
    """
    obs = [r for r in records if isinstance(r, Observation)]
    other = [_event_dict(r) for r in records if not isinstance(r, Observation)]
    base = epoch_ms(obs[0].time) if obs else 0
    terms, sources, flags = _Dict(), _Dict(), _Dict()
    rows = []
    prev = base
    for o in obs:
        t = epoch_ms(o.time)
        rows.append(
            [
                bytes.fromhex(o.obs_id) if len(o.obs_id) == 32 else o.obs_id,
                o.value,
                t - prev,
                epoch_ms(o.received) - t,
                _QUALITY.index(o.quality) | (4 if o.quarantine else 0),
                terms((o.metric, o.code, o.unit)),
                sources((o.device_id, o.bed_id, o.patient_id)),
                flags(tuple(sorted(o.flags))),
            ]
        )
        prev = t
    batch = {
        "v": SCHEMA_VERSION,
        "b": base,
        "d": [[list(x) for x in terms.items], [list(x) for x in sources.items], [list(f) for f in flags.items]],
        "o": rows,
        "x": other,
    }
    return cbor2.dumps(batch, canonical=True)


def merge_encoded(first: bytes, second: bytes) -> bytes:
    """One batch holding `first`'s records, then `second`'s, without building records:
    the second batch's dictionary entries are looked up in (or added to) the first's
    and its rows re-pointed; its first row's time delta is re-based on the first
    batch's last time. Decodes to exactly `decode_batch(first) + decode_batch(second)`
    with observations before other records, as `encode_batch` orders them, and is
    byte for byte what `encode_batch` makes of that list.

    The store grows its newest row by one commit at a time (`appliance.queue.grow`),
    so `first` is up to 200 rows and `second` a handful: `first`'s rows are copied as
    the bytes they are, only the head and the new rows are encoded (re-encoding the
    whole batch was two thirds of a grown commit's CPU)."""
    try:
        a, b = cbor2.loads(first), cbor2.loads(second)
        if a.get("v") not in _READABLE or b.get("v") not in _READABLE:
            raise RecordFormatError("unknown batch schema version")
        if a["v"] != SCHEMA_VERSION or b["v"] != SCHEMA_VERSION:
            # A row stored by an older gateway: rare (once per upgrade), so rebuild.
            return encode_batch(decode_batch(first) + decode_batch(second))
        kept = _rows_bytes(first, a)  # before the dictionary below grows
        remap: list[list[int]] = []
        for mine, theirs in zip(a["d"], b["d"], strict=True):
            index = {tuple(item): i for i, item in enumerate(mine)}
            table = []
            for item in theirs:
                i = index.get(tuple(item))
                if i is None:
                    i = index[tuple(item)] = len(mine)
                    mine.append(item)
                table.append(i)
            remap.append(table)
        new_rows = b["o"]
        if new_rows:
            if a["o"]:
                last = a["b"] + sum(row[2] for row in a["o"])
                new_rows[0][2] = b["b"] + new_rows[0][2] - last
            else:
                a["b"] = b["b"]
            terms, sources, flags = remap
            for row in new_rows:
                row[5], row[6], row[7] = terms[row[5]], sources[row[6]], flags[row[7]]
        if kept is not None and not b["x"]:
            return b"".join(
                (
                    _head(a["b"], a["d"]),
                    _array_head(len(a["o"]) + len(new_rows)),
                    kept,
                    *(cbor2.dumps(row, canonical=True) for row in new_rows),
                    _V2_NO_EVENTS,
                )
            )
        a["o"] += new_rows
        a["x"] += b["x"]
        return cbor2.dumps(a, canonical=True)
    except (cbor2.CBORDecodeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise RecordFormatError(f"corrupt batch: {exc}") from exc


def _head(base: int, dictionary: list[Any]) -> bytes:
    """A batch's canonical bytes up to its row array: the map of five keys, then
    "b", "d" and "o" in that order (canonical CBOR sorts one-letter keys bytewise)."""
    return b"\xa5" + cbor2.dumps({"b": base, "d": dictionary}, canonical=True)[1:] + b"\x61o"


def _array_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x80 | n])
    for marker, width in ((0x98, 1), (0x99, 2), (0x9A, 4)):
        if n < 1 << (8 * width):
            return bytes([marker]) + n.to_bytes(width, "big")
    raise ValueError(f"{n} rows in one batch")


def _rows_bytes(data: bytes, batch: dict[str, Any]) -> bytes | None:
    """The encoded rows of `data` (decoded as `batch`) as they stand in it, or None
    when `data` is not laid out as `encode_batch` lays a batch without events out
    (then the caller encodes the whole batch again)."""
    if not batch["o"] or batch["x"] or not data.endswith(_V2_NO_EVENTS):
        return None
    head = _head(batch["b"], batch["d"]) + _array_head(len(batch["o"]))
    if not data.startswith(head):
        return None
    return data[len(head) : -len(_V2_NO_EVENTS)]


def _time(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def decode_batch(data: bytes) -> list[Record]:
    try:
        batch = cbor2.loads(data)
        if batch.get("v") not in _READABLE:
            raise RecordFormatError(f"unknown batch schema version {batch.get('v')!r}")
        terms, sources, flag_sets = batch["d"]
        out: list[Record] = []
        t = batch["b"]
        for oid, value, dt, drec, q, term, source, f in batch["o"]:
            t += dt
            metric, code, unit = terms[term]
            device, bed, patient = sources[source]
            out.append(
                Observation(
                    obs_id=oid.hex() if isinstance(oid, bytes) else oid,
                    metric=metric,
                    code=code,
                    value=value,
                    unit=unit,
                    time=_time(t),
                    received=_time(t + drec),
                    quality=_QUALITY[q & 3],
                    device_id=device,
                    bed_id=bed,
                    patient_id=patient,
                    flags=frozenset(flag_sets[f]),
                    quarantine=bool(q & 4),
                )
            )
        for raw in batch["x"]:
            out.append(_from_dict(raw))
        return out
    except (cbor2.CBORDecodeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise RecordFormatError(f"corrupt batch: {exc}") from exc


def to_current(data: bytes) -> bytes:
    """`data` in the current schema: unchanged if it is, rewritten if it is schema 1.
    Cheap for the common case (no events) so the uplink can call it on every row."""
    if data.endswith(_V2_NO_EVENTS):
        return data
    if data.endswith(_V1_NO_EVENTS):
        return data[: -len(_V1_NO_EVENTS)] + _V2_NO_EVENTS
    try:
        version = cbor2.loads(data).get("v")
    except (cbor2.CBORDecodeError, AttributeError) as exc:
        raise RecordFormatError(f"corrupt batch: {exc}") from exc
    return data if version == SCHEMA_VERSION else encode_batch(decode_batch(data))


def _from_dict(raw: dict[str, Any]) -> Record:
    kind = raw.pop("type")
    for key in _TIME_KEYS:
        if isinstance(raw.get(key), str):  # schema 1
            raw[key] = parse_time(raw[key])
        elif isinstance(raw.get(key), int) and not isinstance(raw.get(key), bool):
            raw[key] = _time(raw[key])
    if kind == "alarm":
        raw["observation_ids"] = tuple(raw.get("observation_ids", ()))
        return AlarmEvent(**raw)
    if kind == "technical":
        return TechnicalEvent(**raw)
    raise RecordFormatError(f"unexpected record type {kind!r} in batch")
