"""Compact CBOR form of record batches for the store and the uplink.

Observations are dictionary-encoded per batch: metric, unit, device, bed,
patient and flag sets become small integers, times become millisecond offsets
from the batch's base, the 128-bit obs_id is kept as 16 raw bytes. That is what
gets a stored observation under 40 bytes (sealed, on disk). Alarm and technical events are rare
and are stored as their JSON-lines dict in CBOR. Times are kept to the
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

__all__ = ["SCHEMA_VERSION", "decode_batch", "encode_batch", "merge_encoded"]

SCHEMA_VERSION: Final = 1
# The index is the wire code of a quality: the order is fixed.
_QUALITY: Final = (Quality.VALID, Quality.QUESTIONABLE, Quality.INVALID)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(t: datetime) -> int:
    return round((t - _EPOCH).total_seconds() * 1000)


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
    other = [to_json_dict(r) for r in records if not isinstance(r, Observation)]
    base = _ms(obs[0].time) if obs else 0
    terms, sources, flags = _Dict(), _Dict(), _Dict()
    rows = []
    prev = base
    for o in obs:
        t = _ms(o.time)
        rows.append(
            [
                bytes.fromhex(o.obs_id) if len(o.obs_id) == 32 else o.obs_id,
                o.value,
                t - prev,
                _ms(o.received) - t,
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
    with observations before other records, as `encode_batch` orders them."""
    try:
        a, b = cbor2.loads(first), cbor2.loads(second)
        if a.get("v") != SCHEMA_VERSION or b.get("v") != SCHEMA_VERSION:
            raise RecordFormatError("unknown batch schema version")
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
        if b["o"]:
            if a["o"]:
                last = a["b"] + sum(row[2] for row in a["o"])
                first_row = b["o"][0]
                first_row[2] = b["b"] + first_row[2] - last
            else:
                a["b"] = b["b"]
            terms, sources, flags = remap
            for row in b["o"]:
                row[5], row[6], row[7] = terms[row[5]], sources[row[6]], flags[row[7]]
                a["o"].append(row)
        a["x"] += b["x"]
        return cbor2.dumps(a, canonical=True)
    except (cbor2.CBORDecodeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise RecordFormatError(f"corrupt batch: {exc}") from exc


def _time(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def decode_batch(data: bytes) -> list[Record]:
    try:
        batch = cbor2.loads(data)
        if batch.get("v") != SCHEMA_VERSION:
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


def _from_dict(raw: dict[str, Any]) -> Record:
    kind = raw.pop("type")
    for key in ("time", "received", "device_time"):
        if isinstance(raw.get(key), str):
            raw[key] = parse_time(raw[key])
    if kind == "alarm":
        raw["observation_ids"] = tuple(raw.get("observation_ids", ()))
        return AlarmEvent(**raw)
    if kind == "technical":
        return TechnicalEvent(**raw)
    raise RecordFormatError(f"unexpected record type {kind!r} in batch")
