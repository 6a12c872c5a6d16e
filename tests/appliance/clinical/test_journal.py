"""The clinical journal (sealed, own file and thread) and the publisher over it:
nothing in plain text on disk, rows cannot move between streams, bounds hold, a row
is delivered only after its PUBACK and sent again when there was none."""

import asyncio
import contextlib
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.clinical.audit import AuditTrail
from appliance.clinical.chain import AuditEntry, AuditFormatError, verify_chain
from appliance.clinical.journal import AUDIT, CLINICAL, MAX_PENDING, Journal
from appliance.clinical.publisher import AuditPublisher
from appliance.queue.seal import Sealer

KEY = ec.generate_private_key(ec.SECP256R1())
SEAL = Sealer(b"k" * 32)


def make(tmp_path, **kw) -> Journal:
    return Journal(tmp_path / "clinical.db", SEAL, **kw)


def trail_into(journal: Journal, head=None) -> AuditTrail:
    return AuditTrail(KEY, "gw-1", lambda: 1_700_000_000_000, journal.offer_audit, head)


async def test_entries_and_resources_are_sealed_and_read_back(tmp_path):
    j = make(tmp_path)
    trail = trail_into(j)
    trail.record("pairing", {"patient_id": "MRN-SECRET"})
    j.offer_clinical(b'{"resourceType":"Observation","id":"o1","subject":"MRN-SECRET"}')
    await j.commit()
    assert j.head() == (1, trail.head)
    assert [e.fields["patient_id"] for e in j.export_audit()] == ["MRN-SECRET"]
    assert [p for p in j.export_clinical()] == [b'{"resourceType":"Observation","id":"o1","subject":"MRN-SECRET"}']
    j.close()
    raw = (tmp_path / "clinical.db").read_bytes()
    wal = tmp_path / "clinical.db-wal"
    assert b"MRN-SECRET" not in raw and (not wal.exists() or b"MRN-SECRET" not in wal.read_bytes())


async def test_a_row_moved_to_the_other_stream_does_not_open(tmp_path):
    j = make(tmp_path)
    trail_into(j).record("x", {})
    await j.commit()
    j.close()
    # closing(): a connection's own `with` commits but leaves it open (Python 3.13 warns).
    with contextlib.closing(sqlite3.connect(tmp_path / "clinical.db")) as db, db:
        (blob,) = db.execute("SELECT payload FROM audit").fetchone()
        db.execute("INSERT INTO clinical (created_ms, payload) VALUES (0, ?)", (blob,))
        db.execute("UPDATE audit SET payload = ? WHERE seq = 1", (blob[:-1] + bytes([blob[-1] ^ 1]),))
    j = make(tmp_path)
    with pytest.raises(AuditFormatError, match="seq 1"):
        j.head()
    with pytest.raises(Exception, match="does not open"):
        j.export_clinical()
    j.close()


async def test_the_chain_continues_from_the_journals_head(tmp_path):
    j = make(tmp_path)
    trail_into(j).record("a", {})
    await j.commit()
    j.close()
    j = make(tmp_path)
    trail = trail_into(j, j.head())
    trail.record("b", {})
    await j.commit()
    entries = list(j.export_audit())
    assert [e.seq for e in entries] == [1, 2] and verify_chain(entries, KEY.public_key(), from_genesis=True).ok
    j.close()


async def test_bounds(tmp_path):
    j = make(tmp_path, clinical_max_rows=100, audit_max_entries=1000)
    for i in range(MAX_PENDING + 5):
        j.offer_clinical(b"%d" % i)
    assert j.dropped[CLINICAL] == 5
    await j.commit()
    assert j.dropped[CLINICAL] == 5 + MAX_PENDING - 100
    assert j.export_clinical()[0] == b"%d" % (MAX_PENDING + 5 - 100)  # the newest 100 kept
    trail = trail_into(j)
    for _ in range(1200):
        trail.record("x", {})
    await j.commit()
    assert len(list(j.export_audit())) == 1200  # undelivered entries are never purged
    await j.delivered(AUDIT, list(range(1, 1201)))
    trail.record("x", {})
    await j.commit()
    kept = list(j.export_audit())
    assert len(kept) == 1000 and kept[-1].seq == 1201 and verify_chain(kept, KEY.public_key()).ok
    j.close()


class Broker:
    """Stands in for the uplink's connection: None while down, else a PUBACK future."""

    def __init__(self) -> None:
        self.up = False
        self.code: int | None = 0
        self.sent: list[tuple[str, bytes, str]] = []

    def send(self, leaf: str, payload: bytes, content_type: str):
        if not self.up:
            return None
        self.sent.append((leaf, payload, content_type))
        fut = asyncio.get_running_loop().create_future()
        if self.code is not None:
            fut.set_result(self.code)
        else:
            fut.set_exception(ConnectionError("lost"))
        return fut


async def test_rows_are_delivered_only_after_their_puback(tmp_path):
    import json

    j = make(tmp_path)
    broker = Broker()
    pub = AuditPublisher(j, broker.send, "gw-1")
    trail = trail_into(j)
    for i in range(3):
        trail.record("x", {"i": i})
    j.offer_clinical(json.dumps({"resourceType": "Device", "id": "d1"}).encode())
    await j.commit()
    assert not await pub.once(AUDIT)  # not connected: nothing sent, nothing marked
    broker.up, broker.code = True, 0x87  # not authorised
    assert not await pub.once(AUDIT) and len(await j.pending(AUDIT, 10)) == 3
    broker.code = None  # the connection drops before the PUBACK
    assert not await pub.once(AUDIT) and len(await j.pending(AUDIT, 10)) == 3
    broker.code = 0
    assert await pub.once(AUDIT) and await pub.once(CLINICAL)
    assert await j.pending(AUDIT, 10) == [] and await j.pending(CLINICAL, 10) == []
    assert len(list(j.export_audit())) == 3  # delivered audit entries stay on the box
    # What the broker got, resends included, verifies (the repeats are skipped).
    from appliance.clinical.chain import from_line

    entries: list[AuditEntry] = []
    for leaf, payload, content_type in broker.sent:
        if leaf == AUDIT:
            assert content_type == "application/json"
            entries += [from_line(json.dumps(e)) for e in json.loads(payload)["entries"]]
    verdict = verify_chain(entries, KEY.public_key())
    assert verdict.ok and verdict.checked == 3 and len(entries) == 9
    bundle = json.loads(next(p for leaf, p, _ in broker.sent if leaf == CLINICAL))
    assert bundle["type"] == "transaction" and bundle["entry"][0]["request"] == {"method": "PUT", "url": "Device/d1"}
    j.close()
