import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import AlarmEvent, Observation, Record, RecordFormatError, TechnicalEvent
from appliance.core.vocab import AlarmEventState, Priority, Quality
from appliance.queue.records import decode_batch, encode_batch

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TERMS = [("MDC_PULS_OXIM_SAT_O2", 150456, "%"), ("MDC_PULS_OXIM_PULS_RATE", 149530, "/min")]


def observation(i: int, value: float | None = 97.0) -> Observation:
    metric, code, unit = TERMS[i % 2]
    t = T0 + timedelta(seconds=i // 2)
    return Observation(
        hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest(), metric, code, value, unit, t,
        t + timedelta(milliseconds=7), Quality.VALID if value is not None else Quality.INVALID,
        "masimo-1", "ICU-1", None,
        frozenset({"masimo_set"}), True,
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
