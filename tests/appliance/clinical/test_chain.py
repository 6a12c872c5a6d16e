"""The audit chain: it verifies as made, and every edit, deletion and reordering is
caught at the first broken link, named; `bedside audit verify` says so with exit 1."""

import dataclasses
import itertools
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.arbiter import AuditRecord
from appliance.cli import main
from appliance.clinical.audit import ArbiterDigest, AuditTrail
from appliance.clinical.chain import GENESIS, AuditEntry, from_line, make_entry, to_line, verify_chain
from appliance.uplink.pki import issue, make_ca, write_pem

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def chain(n: int = 6) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    trail = AuditTrail(KEY, "gw-1", lambda: 1_700_000_000_000 + len(out), out.append)
    for i in range(n):
        trail.record("alarm_ack", {"bed": "ICU-1", "rule": f"r{i}", "uid": 1000, "user": "nurse"})
    return out


def test_a_chain_verifies_as_made():
    entries = chain()
    verdict = verify_chain(entries, KEY.public_key())
    assert verdict.ok and verdict.checked == 6 and (verdict.first_seq, verdict.last_seq) == (1, 6)
    assert entries[0].prev == GENESIS and all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert verify_chain(entries, KEY.public_key(), from_genesis=True).ok


def test_the_line_form_round_trips():
    entries = chain(3)
    again = [from_line(to_line(e)) for e in entries]
    assert again == entries and verify_chain(again, KEY.public_key()).ok


def test_an_edit_is_caught_at_the_edited_entry():
    entries = chain()
    entries[3] = dataclasses.replace(entries[3], fields={**entries[3].fields, "user": "someone-else"})
    verdict = verify_chain(entries, KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 4 and "edited" in verdict.reason and "seq 4" in verdict.reason


def test_an_edit_with_a_recomputed_hash_fails_the_signature():
    entries = chain()
    forged = make_entry(OTHER, "gw-1", 4, time_ms=entries[3].time_ms, kind="alarm_ack",
                        fields={"bed": "ICU-9"}, prev=entries[2].hash)  # fmt: skip
    entries[3] = forged
    verdict = verify_chain(entries, KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 4 and "signature" in verdict.reason


def test_a_deletion_is_caught_where_the_gap_is():
    entries = chain()
    del entries[2]
    verdict = verify_chain(entries, KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 3 and "missing" in verdict.reason and "seq 4" in verdict.reason


def test_deleting_the_first_entries_is_caught_from_genesis():
    entries = chain()[2:]
    assert verify_chain(entries, KEY.public_key()).ok  # an export after retention starts later
    verdict = verify_chain(entries, KEY.public_key(), from_genesis=True)
    assert not verdict.ok and verdict.broken_at == 1 and "seq 3" in verdict.reason


def test_a_reordering_is_caught():
    entries = chain()
    entries[4], entries[2] = entries[2], entries[4]
    verdict = verify_chain(entries, KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 3
    swapped = chain()
    swapped[3], swapped[4] = swapped[4], swapped[3]
    verdict = verify_chain(swapped, KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 4
    moved_back = chain()
    moved_back.append(moved_back.pop(1))
    verdict = verify_chain(moved_back, KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 2


def test_a_relinked_entry_cannot_hide_a_deletion():
    """Delete seq 3 and rewrite seq 4 to point at seq 2 (renumbered): only the key can sign that."""
    entries = chain()
    del entries[2]
    e = entries[2]
    entries[2] = AuditEntry(e.gw, 3, e.time_ms, e.kind, e.fields, entries[1].hash, e.hash, e.sig)
    verdict = verify_chain(entries, KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 3


def test_an_exact_resend_is_skipped_and_counted():
    entries = chain()
    entries.insert(3, entries[2])
    verdict = verify_chain(entries, KEY.public_key())
    assert verdict.ok and verdict.duplicates == 1 and verdict.checked == 6


def test_another_key_does_not_verify():
    verdict = verify_chain(chain(), OTHER.public_key())
    assert not verdict.ok and verdict.broken_at == 1 and "signature" in verdict.reason


def test_a_trail_continues_its_head():
    first = chain(3)
    out: list[AuditEntry] = []
    trail = AuditTrail(KEY, "gw-1", lambda: 1, out.append, head=(first[-1].seq, first[-1].hash))
    trail.start("gateway started")
    assert verify_chain(first + out, KEY.public_key()).ok and out[0].seq == 4


def test_fields_are_made_json_safe():
    out: list[AuditEntry] = []
    trail = AuditTrail(KEY, "gw-1", lambda: 1, out.append)
    trail.record("x", {"nan": float("nan"), "set": {"b", "a"}, "obj": object(), "long": "y" * 5000})
    fields = out[0].fields
    assert fields["nan"] is None and fields["set"] == ["a", "b"] and isinstance(fields["obj"], str)
    assert len(fields["long"]) == 1024 and verify_chain(out, KEY.public_key()).ok


def test_the_arbiter_digest_is_one_entry_per_bed_and_metric():
    digest = ArbiterDigest()
    for i in range(500):  # a flapping source: 500 decisions
        chosen = "a" if i % 2 else "b"
        digest.add(AuditRecord(i, "ICU-1", "MDC_PULS_OXIM_SAT_O2", chosen, "most recent valid",
                               (("a", 97.0, "valid"), ("b", 95.0, "valid"))))  # fmt: skip
    digest.add(AuditRecord(1, "ICU-2", "MDC_ECG_HEART_RATE", "c", "precedence", (("c", 70.0, "valid"),)))
    made: list[tuple[str, dict[str, object]]] = []
    assert digest.flush(lambda kind, fields: made.append((kind, dict(fields))), 60.0) == 2
    assert [m[0] for m in made] == ["arbiter_decisions"] * 2
    assert made[0][1]["decisions"] == 500 and made[0][1]["chosen"] == {"a": 250, "b": 250}
    assert digest.flush(lambda k, f: made.append((k, dict(f))), 60.0) == 0 and len(made) == 2


@pytest.fixture
def box_cert(tmp_path):
    ca = make_ca("Audit CA")
    leaf = issue(ca, "gw-1")
    return leaf.key, str(write_pem(tmp_path / "gw-1.pem", leaf.cert))


def _write(path, entries):
    path.write_text("".join(to_line(e) + "\n" for e in entries))


def test_bedside_audit_verify(tmp_path, box_cert, capsys):
    key, cert = box_cert
    out: list[AuditEntry] = []
    trail = AuditTrail(key, "gw-1", lambda: 5, out.append)
    for i in range(4):
        trail.record("pairing", {"device_id": f"d{i}"})
    _write(tmp_path / "ok.jsonl", out)
    assert main(["audit", "verify", "--cert", cert, str(tmp_path / "ok.jsonl")]) == 0
    assert "ok: 4 entries, seq 1..4" in capsys.readouterr().out
    edited = json.loads(to_line(out[1]))
    edited["fields"]["device_id"] = "other"
    (tmp_path / "bad.jsonl").write_text("\n".join([to_line(out[0]), json.dumps(edited), *map(to_line, out[2:])]) + "\n")
    assert main(["audit", "verify", "--cert", cert, str(tmp_path / "bad.jsonl")]) == 1
    assert "broken at entry 2: seq 2: content does not match its hash (edited)" in capsys.readouterr().out
    # Several gateways' entries in one file: one chain at a time.
    other: list[AuditEntry] = []
    AuditTrail(OTHER, "gw-2", lambda: 5, other.append).record("pairing", {})
    _write(tmp_path / "mixed.jsonl", [out[0], other[0], *out[1:]])
    assert main(["audit", "verify", "--cert", cert, str(tmp_path / "mixed.jsonl")]) == 1
    assert "chains mixed" in capsys.readouterr().out
    assert main(["audit", "verify", "--gateway", "gw-1", "--cert", cert, str(tmp_path / "mixed.jsonl")]) == 0
    capsys.readouterr()
    # A whole `audit` publish payload per line is read too.
    payload = json.dumps({"entries": [json.loads(to_line(e)) for e in out], "gw": "gw-1", "v": 1})
    (tmp_path / "topic.jsonl").write_text(payload + "\n")
    assert main(["audit", "verify", "--cert", cert, str(tmp_path / "topic.jsonl")]) == 0


def test_bedside_audit_verify_refuses_bad_input_in_one_line(tmp_path, box_cert, capsys):
    _, cert = box_cert
    (tmp_path / "junk.jsonl").write_text('{"not": "an entry"}\n')
    assert main(["audit", "verify", "--cert", cert, str(tmp_path / "junk.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.jsonl:1: not an audit entry" in err
    assert main(["audit", "verify", "--cert", str(tmp_path / "junk.jsonl"), str(tmp_path / "junk.jsonl")]) == 2
    assert "neither a PEM certificate nor a PEM public key" in capsys.readouterr().err
    assert main(["audit", "verify", "--cert", cert, str(tmp_path / "missing")]) == 2


def test_a_repeated_publish_is_skipped_but_a_different_copy_is_not():
    entries = chain()
    resent = entries[:3] + entries[:3] + entries[3:]  # a batch published again after a lost PUBACK
    verdict = verify_chain(resent, KEY.public_key())
    assert verdict.ok and verdict.duplicates == 3 and verdict.checked == 6
    other = make_entry(KEY, "gw-1", 2, time_ms=1, kind="alarm_ack", fields={}, prev=entries[0].hash)
    verdict = verify_chain([*entries[:3], other, *entries[3:]], KEY.public_key())
    assert not verdict.ok and verdict.broken_at == 4 and "seq 2 again with other content" in verdict.reason
