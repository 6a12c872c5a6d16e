import hashlib
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import AlarmEvent, Observation, Record, RecordFormatError, TechnicalEvent, to_json_dict
from appliance.core.vocab import AlarmEventState, Priority, Quality
from appliance.queue.records import decode_batch, encode_batch, to_current

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TERMS = [("MDC_PULS_OXIM_SAT_O2", 150456, "%"), ("MDC_PULS_OXIM_PULS_RATE", 149530, "/min")]


def observation(i: int, value: float | None = 97.0) -> Observation:
    metric, code, unit = TERMS[i % 2]
    t = T0 + timedelta(seconds=i // 2)
    return Observation(
        hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest(), metric, code, value, unit, t,
        t + timedelta(milliseconds=7), Quality.VALID if value is not None else Quality.INVALID,
        "masimo-1", "ICU-1", "P-1",
        frozenset({"masimo_set"}), False,
    )  # fmt: skip


def test_round_trip_of_every_record_type():
    alarm = AlarmEvent(
        "a1", "spo2-low", "ICU-1", Priority.HIGH, "physiological", AlarmEventState.ACTIVE, T0, ("o1",), "SpO2 low"
    )
    tech = TechnicalEvent("m1", "stale", active=False, detail="x", time=T0, bed_id="ICU-1")
    records: list[Record] = [observation(0), observation(1, None), alarm, tech]
    assert decode_batch(encode_batch(records)) == records


def test_compact_under_40_bytes_per_observation():
    obs = [observation(i, 90.0 + i % 10) for i in range(3000)]
    size = len(encode_batch(obs)) / len(obs)
    assert size < 40, size


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300))
def test_garbage_is_a_record_format_error(data):
    with pytest.raises(RecordFormatError):
        decode_batch(data)


def varied(i: int, value: float, shift_s: int, device: str, flags: frozenset[str]) -> Observation:
    o = observation(i, value)
    t = T0 + timedelta(seconds=shift_s)
    return Observation(
        o.obs_id, o.metric, o.code, value, o.unit, t, t + timedelta(milliseconds=i % 50), o.quality, device,
        "ICU-1", None if i % 3 else "P-7", flags, i % 5 == 0,
    )  # fmt: skip


BATCHES = st.lists(
    st.tuples(
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        st.integers(-3600, 3600),  # device times go backwards too (clock changes, replays)
        st.sampled_from(["masimo-1", "nonin-2", "hl7-3"]),
        st.sampled_from([frozenset(), frozenset({"masimo_set"}), frozenset({"a", "b"})]),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(first=BATCHES, second=BATCHES, other=st.booleans())
def test_merging_encoded_batches_decodes_to_both_in_order(first, second, other):
    from appliance.queue.records import merge_encoded

    a: list[Record] = [varied(i, *args) for i, args in enumerate(first)]
    b: list[Record] = [varied(100 + i, *args) for i, args in enumerate(second)]
    if other:  # technical events travel in telemetry batches after the observations
        b.append(TechnicalEvent("m1", "stale", active=True, detail="x", time=T0, bed_id="ICU-1"))
    merged = decode_batch(merge_encoded(encode_batch(a), encode_batch(b)))
    observations = [r for r in [*a, *b] if isinstance(r, Observation)]
    assert merged == observations + [r for r in b if not isinstance(r, Observation)]


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(BATCHES, min_size=2, max_size=4))
def test_merged_batches_are_byte_for_byte_what_encoding_their_records_makes(batches):
    # The store grows a row commit by commit: merge after merge must stay canonical,
    # or a grown row would differ from the same records committed at once.
    from appliance.queue.records import merge_encoded

    parts = [[varied(100 * k + i, *args) for i, args in enumerate(batch)] for k, batch in enumerate(batches)]
    merged = encode_batch(parts[0])
    for part in parts[1:]:
        merged = merge_encoded(merged, encode_batch(part))
    assert merged == encode_batch([o for part in parts for o in part])


@settings(max_examples=100, deadline=None)
@given(batch=BATCHES.filter(bool))
def test_an_encoded_batch_without_events_is_grown_without_encoding_its_rows_again(batch):
    # The fast path of merge_encoded (rows copied as bytes) applies to every batch the
    # store writes for telemetry: if it stopped finding the rows, growing would still
    # be right but cost the whole batch's encoding again on every commit.
    from appliance.queue.records import _rows_bytes

    data = encode_batch([varied(i, *args) for i, args in enumerate(batch)])
    rows = _rows_bytes(data, cbor2.loads(data))
    assert rows is not None
    assert b"".join(cbor2.dumps(r, canonical=True) for r in cbor2.loads(data)["o"]) == rows


def test_merging_garbage_is_a_record_format_error():
    from appliance.queue.records import merge_encoded

    with pytest.raises(RecordFormatError):
        merge_encoded(encode_batch([observation(0)]), b"\xa1\x61v\x09")


def test_schema_1_batches_are_read_and_rewritten_with_epoch_ms_times() -> None:
    alarm = AlarmEvent("a", "r", "ICU-1", Priority.HIGH, "physiological", AlarmEventState.ACTIVE, T0)
    v1_obs = cbor2.dumps({**cbor2.loads(encode_batch([observation(1)])), "v": 1}, canonical=True)
    v1_alarm = cbor2.dumps({"v": 1, "b": 0, "d": [[], [], []], "o": [], "x": [to_json_dict(alarm)]}, canonical=True)
    for old in (v1_obs, v1_alarm):
        new = to_current(old)
        assert cbor2.loads(new)["v"] == 2 and decode_batch(new) == decode_batch(old)
        assert to_current(new) == new
    assert cbor2.loads(to_current(v1_alarm))["x"][0]["time"] == int(T0.timestamp() * 1000)
