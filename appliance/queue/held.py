"""Quarantine kept on the box: held after delivery, taken out for `bedside devices release`.

`keep_delivered_quarantine` (in the uplink's delete, same transaction): a delivered
`unpaired` row is not deleted but becomes `held` (sealed again under its new
class), so the box keeps one copy of its quarantine until release or expiry.

`take_held` runs on the store thread: it reads every `unpaired` and `held` row
(delivered or not), keeps in place what is not released (the row rewritten,
sealed again under its class) and returns the observations of `device_id` at
`bed_id` received at or after `since_ms` (the census patient's arrival in the
bed: nothing older can be theirs). All in one transaction: a failure releases
nothing and loses nothing.

A linear pass over the two classes, bounded by `quarantine_ttl_s` and the budget;
it is an operator action, never on the alarm path.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Final

from appliance.core.model import Observation
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.schema import RecordClass
from appliance.queue.seal import Sealer

if TYPE_CHECKING:
    from appliance.queue.store import Store

__all__ = ["HELD", "keep_delivered_quarantine", "take_held"]

HELD: Final = int(RecordClass.HELD)
UNPAIRED: Final = int(RecordClass.UNPAIRED)


def keep_delivered_quarantine(db: sqlite3.Connection, sealer: Sealer, first: int, last: int) -> None:
    """Rows first..last of class `unpaired` become `held` (inside the caller's transaction)."""
    rows = db.execute(
        "SELECT id, payload FROM records WHERE id BETWEEN ? AND ? AND cls = ?", (first, last, UNPAIRED)
    ).fetchall()
    for row_id, blob in rows:
        try:
            payload = sealer.open(blob, bytes([UNPAIRED]))
        except Exception:  # does not open: deleted as delivered (it was sent as found)
            continue
        sealed = sealer.seal(payload, bytes([HELD]))
        db.execute("UPDATE records SET cls = ?, payload = ? WHERE id = ?", (HELD, sealed, row_id))


def _theirs(obs: Observation, device_id: str, bed_id: str, since_ms: int) -> bool:
    return obs.device_id == device_id and obs.bed_id == bed_id and obs.received.timestamp() * 1000 >= since_ms


def take_held(store: Store, device_id: str, bed_id: str, since_ms: int) -> list[Observation]:
    taken: list[Observation] = []

    def body() -> None:
        db = store._db
        rows = db.execute(
            "SELECT id, cls, payload FROM records WHERE cls IN (?, ?) ORDER BY created_ms, id", (UNPAIRED, HELD)
        ).fetchall()
        for row_id, cls, blob in rows:
            aad = bytes([cls])
            try:
                records = decode_batch(store._sealer.open(blob, aad))
            except Exception:  # a row that does not open or decode stays as it is (the export reports it)
                continue
            mine = [r for r in records if isinstance(r, Observation) and _theirs(r, device_id, bed_id, since_ms)]
            if not mine:
                continue
            rest = [r for r in records if r not in mine]
            if rest:
                sealed = store._sealer.seal(encode_batch(rest), aad)
                db.execute("UPDATE records SET payload = ?, count = ?, nbytes = ? WHERE id = ?",
                           (sealed, len(rest), len(sealed), row_id))  # fmt: skip
            else:
                db.execute("DELETE FROM records WHERE id = ?", (row_id,))
            taken.extend(mine)

    store._write(body)
    return taken
