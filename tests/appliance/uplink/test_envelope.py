"""Several store rows per publish: packing bounds and both envelope versions."""

import cbor2

from appliance.queue.store import RecordClass
from appliance.uplink.envelope import MAX_PUBLISH_BYTES, MAX_ROWS_PER_PUBLISH, batches_of, encode, pack

T, A = RecordClass.TELEMETRY, RecordClass.ALARM


def rows(n: int, cls=T, created=0, size=100, start=0):
    return [(start + i, cls, created, bytes(size)) for i in range(n)]


def test_an_alarm_goes_alone_and_rows_of_a_class_and_replay_state_share_a_publish():
    rs = rows(2, A, 5) + rows(3, T, 5, start=10) + rows(4, T, 0, start=20)  # live, then backlog
    groups = pack(rs, connected_ms=5, max_publishes=10)
    assert [len(g) for g in groups] == [1, 1, 3, 4]


def test_publishes_stay_under_the_size_and_row_bounds_and_leave_a_suffix():
    big = rows(10, size=MAX_PUBLISH_BYTES // 3)
    assert [len(g) for g in pack(big, 0, 10)] == [3, 3, 3, 1]
    many = rows(MAX_ROWS_PER_PUBLISH + 5, size=1)
    assert [len(g) for g in pack(many, 0, 10)] == [MAX_ROWS_PER_PUBLISH, 5]
    first = pack(big, 0, 2)
    assert [r for g in first for r in g] == big[:6]  # what is left over is a suffix: fetched again


def test_both_envelope_versions_decode():
    v2 = cbor2.loads(encode("gw", 1, T, True, [b"a", b"b"], boot="0123456789abcdef"))
    assert batches_of(v2) == [b"a", b"b"] and v2["replay"] is True
    v1 = {"v": 1, "gw": "gw", "seq": 1, "cls": 2, "replay": False, "batch": b"a"}
    assert batches_of(v1) == [b"a"]


def test_every_envelope_carries_the_boot_id_with_its_seq_and_v3_still_decodes():
    v4 = cbor2.loads(encode("gw", 7, T, False, [b"a"], boot="0123456789abcdef"))
    assert (v4["v"], v4["boot"], v4["seq"]) == (4, "0123456789abcdef", 7)
    v3 = {"v": 3, "gw": "gw", "seq": 1, "cls": 2, "replay": False, "batches": [b"a"]}  # older gateways: no boot
    assert batches_of(v3) == [b"a"]
