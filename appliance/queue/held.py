"""Taking a device's held quarantine out of the store, for `bedside devices release`.

`take_held` runs on the store thread: it reads every `held` row, keeps in place
what is not released (the row rewritten, sealed again under its class) and
returns the observations of `device_id` at `bed_id` received at or after
`since_ms` (the census patient's arrival in the bed: nothing older can be
theirs). All in one transaction: a failure releases nothing and loses nothing.

A linear pass over the held class, bounded by `quarantine_ttl_s` and the budget;
it is an operator action, never on the alarm path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.core.model import Observation
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.schema import RecordClass

if TYPE_CHECKING:
    from appliance.queue.store import Store

__all__ = ["take_held"]

_AAD = bytes([RecordClass.HELD])


def _theirs(obs: Observation, device_id: str, bed_id: str, since_ms: int) -> bool:
    return obs.device_id == device_id and obs.bed_id == bed_id and obs.received.timestamp() * 1000 >= since_ms


def take_held(store: Store, device_id: str, bed_id: str, since_ms: int) -> list[Observation]:
    taken: list[Observation] = []

    def body() -> None:
        db = store._db
        rows = db.execute(
            "SELECT id, payload FROM records WHERE cls = ? ORDER BY created_ms, id", (int(RecordClass.HELD),)
        )
        for row_id, blob in rows.fetchall():
            try:
                records = decode_batch(store._sealer.open(blob, _AAD))
            except Exception:  # a row that does not open or decode stays as it is (the export reports it)
                continue
            mine = [r for r in records if isinstance(r, Observation) and _theirs(r, device_id, bed_id, since_ms)]
            if not mine:
                continue
            rest = [r for r in records if r not in mine]
            if rest:
                sealed = store._sealer.seal(encode_batch(rest), _AAD)
                db.execute("UPDATE records SET payload = ?, count = ?, nbytes = ? WHERE id = ?",
                           (sealed, len(rest), len(sealed), row_id))  # fmt: skip
            else:
                db.execute("DELETE FROM records WHERE id = ?", (row_id,))
            taken.extend(mine)

    taken.clear()
    store._write(body)
    return taken
