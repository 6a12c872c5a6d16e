"""One flipped bit in one stored row: quarantined, reported, and never a blocker."""

import asyncio
import json
import sqlite3
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import cbor2

from appliance.core.model import TechnicalEvent
from appliance.queue.queue import QueueSettings, RecordQueue
from appliance.queue.records import encode_batch
from appliance.queue.store import RecordClass
from appliance.uplink.client import Uplink, UplinkSettings
from appliance.uplink.envelope import batches_of
from tests.appliance.queue.test_queue import ALARM
from tests.appliance.queue.test_records import observation
from tests.integration.helpers import cli, gateway_toml, until


class AckingClient:
    """In-memory twin of the MQTT client: every publish is acknowledged at once."""

    def __init__(self) -> None:
        self._package_handler = SimpleNamespace(_connack_properties={"receive_maximum": [20]})
        self.batches: list[bytes] = []

    def publish_tracked(
        self, topic: str, payload: bytes, retain: bool = False, properties: Mapping[str, Any] | None = None
    ) -> asyncio.Future[int]:
        self.batches.extend(batches_of(cbor2.loads(payload)))
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        fut.set_result(0)
        return fut


def flip_one_bit(db_path, row_id: int) -> None:
    raw = sqlite3.connect(db_path)
    (blob,) = raw.execute("SELECT payload FROM records WHERE id = ?", (row_id,)).fetchone()
    raw.close()
    data = bytearray(db_path.read_bytes())
    at = data.find(blob)
    assert at > 0 and data.find(blob, at + 1) == -1
    data[at + len(blob) // 2] ^= 0x10
    db_path.write_bytes(bytes(data))


def export_cli(cfg):
    res = cli("queue", "--config", str(cfg), "export")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()], res.stderr.decode()


async def test_a_flipped_bit_is_quarantined_and_delivery_and_export_go_on(tmp_path):
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(gateway_toml(tmp_path, "ICU-1", sink=False, queue=True))
    db = tmp_path / "store.db"
    q = RecordQueue(QueueSettings(str(db), str(tmp_path / "store.key")), lambda e: None)
    ids = [q.store.put(RecordClass.TELEMETRY, [(encode_batch([observation(5 * i + j) for j in range(5)]), 5)],
                       durable=True)[0] for i in range(6)]  # fmt: skip
    q.store.put(RecordClass.ALARM, [(encode_batch([ALARM]), 1)], durable=True)
    q.close()  # checkpoints: every row is in the database file
    flip_one_bit(db, ids[2])

    rows, err = export_cli(cfg)  # before the gateway saw it: skipped, named, the rest exported
    assert len(rows) == 26 and rows[0]["type"] == "alarm"
    assert "1 row quarantined: row 3 (telemetry, 5 records)" in err

    reports: list[TechnicalEvent] = []
    q = RecordQueue(QueueSettings(str(db), str(tmp_path / "store.key")), reports.append)
    q._loop = asyncio.get_running_loop()
    uplink = Uplink(UplinkSettings("h", 1, "h", "gw", "a", "b", "c"), q, lambda e: None)
    client = AckingClient()
    lost = asyncio.Event()
    drain = asyncio.create_task(uplink._drain(client, lost, 0))  # type: ignore[arg-type]
    await until(lambda: uplink.sent_rows == 6, 10)
    assert (await q.stats()).rows == {}  # the backlog drained past the bad row
    lost.set()
    await asyncio.gather(drain, return_exceptions=True)
    assert not drain.cancelled() and isinstance(drain.exception(), ConnectionError)  # not the decryption error
    await asyncio.sleep(0)
    assert [r.kind for r in reports] == ["store_corrupt"] and "row 3" in reports[0].detail
    assert (await q.stats()).quarantined_rows == 1
    q.close()

    stats = json.loads(cli("queue", "--config", str(cfg), "stats").stdout)
    assert stats["quarantined_rows"] == 1
    rows, err = export_cli(cfg)
    assert rows == [] and "1 row quarantined: row 3" in err
