"""Observation id semantics (docs/wire.md, "Identity"), as properties: distinct
readings never share an id; the same reading delivered again keeps it."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import MonotonicUTC
from appliance.core.model import DeviceEvent, Observation, Reading
from appliance.core.vocab import Quality
from appliance.normalize import DeviceContext, Normalizer, obs_id
from appliance.queue.records import decode_batch, encode_batch
from drivers.ble.codec import MeasurementStream
from drivers.hl7.codec import Hl7Codec, Seen
from drivers.hl7.mllp import frame

RECEIVED = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
_times = st.none() | st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1))
# (gateway, device, boot, seq, device time, label): what tells two stream readings apart.
_stream_keys = st.tuples(_text, _text, _text, st.integers(0, 2**40), _times, _text)
# (gateway, device, origin, device time, label): the same for readings with their own identity.
_origin_keys = st.tuples(_text, _text, _text.filter(bool), _times, _text)

Key = tuple[str, str, str, int, datetime | None, str]
OriginKey = tuple[str, str, str, datetime | None, str]


def stream_id(key: Key) -> str:
    gateway, device, boot, seq, time, label = key
    return obs_id(Reading(device, label, 1.0, "", time, seq=seq), gateway, device, boot)


def origin_id(key: OriginKey, seq: int = 0, boot: str = "b") -> str:
    gateway, device, origin, time, label = key
    return obs_id(Reading(device, label, 1.0, "", time, seq=seq, origin=origin), gateway, device, boot)


@settings(max_examples=300)
@given(_stream_keys, _stream_keys)
def test_distinct_stream_readings_never_share_an_id(a: Key, b: Key) -> None:
    # gateway, device, boot (a restart), sequence, device time or label: any difference is a new id
    assert (stream_id(a) == stream_id(b)) == (a == b)


@settings(max_examples=300)
@given(_origin_keys, _origin_keys, st.integers(0, 2**20), st.integers(0, 2**20), _text, _text)
def test_readings_with_an_origin_differ_by_it_and_ignore_boot_and_sequence(
    a: OriginKey, b: OriginKey, seq_a: int, seq_b: int, boot_a: str, boot_b: str
) -> None:
    # Another connection or another start of the gateway changes seq and boot, not the id.
    assert (origin_id(a, seq_a, boot_a) == origin_id(b, seq_b, boot_b)) == (a == b)


@given(_stream_keys, _origin_keys)
def test_a_stream_reading_and_one_with_an_origin_never_share_an_id(a: Key, b: OriginKey) -> None:
    assert stream_id(a) != origin_id(b)


def test_a_gateway_restart_gives_a_clock_less_stream_new_ids_through_the_normalizer() -> None:
    reading = Reading("m1", "SPO2", 97.0, "%", None, seq=1)  # same label and position, no device time
    ids = set()
    for boot in ("0123456789abcdef", "fedcba9876543210"):
        for gateway in ("gw-1", "gw-2"):  # two gateways whose device ids are the same
            ctx = DeviceContext("m1", "masimo", "B", gateway_id=gateway, boot_id=boot)
            obs, _ = Normalizer().normalize(reading, ctx, RECEIVED)
            assert obs is not None
            ids.add(obs.obs_id)
    assert len(ids) == 4


MSG = (
    "MSH|^~\\&|{sender}|F|||{ts}||ORU^R01^ORU_R01|{id}|P|2.6|||AL|NE\rOBR|1|||x|||20260101120000\r"
    "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|{spo2}|262688^MDC_DIM_PERCENT^MDC|||||R|||20261202070000\r"
    "OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.2|{pr}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||20261202070000\r"
)


def hl7(sender: str, control_id: str, spo2: int, ts: str = "20261202070000") -> bytes:
    return frame(MSG.format(sender=sender, id=control_id, spo2=spo2, pr=spo2 - 20, ts=ts).encode())


def hl7_ids(codec: Hl7Codec, message: bytes, boot: str = "boot-1") -> list[str]:
    ctx = DeviceContext("hl7", "hl7", "B", gateway_id="gw-1", boot_id=boot)
    out = []
    for event in codec.feed(message):
        if isinstance(event, Reading):
            obs, _ = Normalizer(max_clock_skew_s=None).normalize(event, ctx, RECEIVED)
            assert obs is not None
            out.append(obs.obs_id)
    return out


_senders = st.sampled_from(["MON1", "MON2"])
_control_ids = st.sampled_from(["1", "2", "MSG00001"])


@settings(max_examples=60, deadline=None)
@given(_senders, _control_ids, st.integers(80, 100), st.integers(0, 5), st.integers(1, 20))
def test_an_hl7_message_resent_on_another_connection_or_after_a_restart_keeps_its_ids(
    sender: str, control_id: str, spo2: int, earlier: int, restamp: int
) -> None:
    seen = Seen()  # one listener: its memory of messages taken
    first = Hl7Codec("hl7", MonotonicUTC(), seen=seen)
    for i in range(earlier):  # other traffic first: the resend's sequence number differs
        first.feed(hl7("OTHER", f"X{i}", 90))
    ids = hl7_ids(first, hl7(sender, control_id, spo2))
    assert len(ids) == len(set(ids)) == 2  # two rows of one message: two ids
    # The listener itself uses a resend on a new connection once (no new readings) ...
    assert hl7_ids(Hl7Codec("hl7", MonotonicUTC(), seen=seen), hl7(sender, control_id, spo2)) == []
    # ... and after a restart (new boot, memory empty), even with a re-stamped MSH-7,
    # the same message gets the same ids, which consumers deduplicate on.
    resent = hl7(sender, control_id, spo2, ts=f"202612020800{restamp:02d}")
    assert hl7_ids(Hl7Codec("hl7", MonotonicUTC()), resent, boot="boot-2") == ids


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_senders, _control_ids, st.integers(80, 100)), min_size=2, max_size=6, unique=True))
def test_distinct_hl7_messages_never_share_ids_even_when_a_control_id_is_reused(
    messages: list[tuple[str, str, int]],
) -> None:
    codec = Hl7Codec("hl7", MonotonicUTC())
    ids = [i for sender, control_id, spo2 in messages for i in hl7_ids(codec, hl7(sender, control_id, spo2))]
    assert len(ids) == len(set(ids)) == 2 * len(messages)


def glucose(seq: int, minute: int, value: int) -> bytes:
    """A glucose measurement record (flags: concentration in kg/L, capillary whole blood, finger)."""
    sfloat = 0xB000 | value  # SFLOAT, exponent -5: value x 1e-5 kg/L = value mg/dL
    return struct.pack("<BHHBBBBBHB", 0x02, seq, 2024, 3, 5, 7, minute, 0, sfloat, 0x11)


def ble_ids(stream: MeasurementStream, records: list[tuple[int, int, int]], boot: str) -> list[str]:
    ctx = DeviceContext("g", "ble-glucose", "B", gateway_id="gw-1", boot_id=boot)
    out = []
    for seq, minute, value in records:
        events: list[DeviceEvent] = stream.value("glucose", glucose(seq, minute, value), stored=True)
        for event in events:
            assert isinstance(event, Reading)
            obs, _ = Normalizer(max_clock_skew_s=None).normalize(event, ctx, RECEIVED)
            assert obs is not None
            out.append(obs.obs_id)
    return out


_records = st.lists(
    st.tuples(st.integers(0, 65535), st.integers(0, 59), st.integers(40, 400)),
    min_size=1,
    max_size=8,
    unique_by=lambda r: r[0],
)


@settings(max_examples=60, deadline=None)
@given(_records, st.integers(0, 3))
def test_a_ble_record_fetched_again_keeps_its_id_and_distinct_records_differ(
    records: list[tuple[int, int, int]], live_before: int
) -> None:
    first = MeasurementStream("g")
    ids = ble_ids(first, records, boot="boot-1")
    assert len(ids) == len(set(ids)) == len(records)
    again = MeasurementStream("g")  # a new connection after a restart: the meter re-sends its store
    for _ in range(live_before):
        again.value("heart-rate", bytes([0, 72]))  # other values first: its own counter moved on
    assert ble_ids(again, records, boot="boot-2") == ids


@given(st.lists(st.tuples(_text, st.integers(0, 2**20)), min_size=1, max_size=20))
def test_a_store_replay_keeps_every_id(keys: list[tuple[str, int]]) -> None:
    observations = []
    for i, (label, seq) in enumerate(keys):
        reading = Reading("m1", label, 97.0, "%", seq=seq)
        t = RECEIVED + timedelta(seconds=i)
        ident = obs_id(reading, "gw-1", "m1", "boot-1")
        observations.append(
            Observation(ident, "MDC_PULS_OXIM_SAT_O2", 150456, 97.0, "%", t, t, Quality.VALID, "m1", "B", None)
        )
    replayed = decode_batch(encode_batch(observations))
    assert [o.obs_id for o in replayed if isinstance(o, Observation)] == [o.obs_id for o in observations]
