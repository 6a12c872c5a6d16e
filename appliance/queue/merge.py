"""Merging stored batches for compaction: decoded and encoded off the store thread."""

from __future__ import annotations

from appliance.core.model import RecordFormatError
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.upkeep import Group

__all__ = ["merge_groups", "merge_payloads"]


def merge_groups(plan: list[Group]) -> tuple[list[tuple[Group, bytes]], list[tuple[int, int, str]]]:
    """Each group's merged payload; a group with a row that does not decode is left
    out, and that row named (id, record count, reason)."""
    merged: list[tuple[Group, bytes]] = []
    bad: list[tuple[int, int, str]] = []
    for g in plan:
        records = []
        for row_id, count, payload in zip(g.ids, g.counts, g.payloads, strict=True):
            try:
                records += decode_batch(payload)
            except RecordFormatError as exc:
                bad.append((row_id, count, str(exc)))
        if not bad or bad[-1][0] not in g.ids:
            merged.append((g, encode_batch(records)))
    return merged, bad


def merge_payloads(payloads: list[bytes]) -> bytes:
    """One batch holding every record of `payloads` (in order)."""
    return encode_batch([r for p in payloads for r in decode_batch(p)])
