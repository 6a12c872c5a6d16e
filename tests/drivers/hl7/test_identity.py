"""Every HL7 reading once, with its own identity: control ids, resends and sequence
across a listener's connections (the outside tester's findings 1 and 6)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from appliance.core.clock import MonotonicUTC
from appliance.core.model import DeviceEvent, Reading
from appliance.normalize import DeviceContext, Normalizer
from drivers.hl7.codec import Hl7Codec, Seen
from drivers.hl7.mllp import frame
from tests.drivers.hl7.test_listener import listening

MSG = (
    "MSH|^~\\&|S|F|||{ts}||ORU^R01^ORU_R01|{id}|P|2.6|||AL|NE\rOBR|1|||x|||20260101120000\r"
    "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|{spo2}|262688^MDC_DIM_PERCENT^MDC|||||R|||20261202070000\r"
)


def msg(control_id: str, spo2: int, ts: str = "20261202070000") -> bytes:
    return frame(MSG.format(id=control_id, spo2=spo2, ts=ts).encode())


def spo2(events: list[DeviceEvent]) -> list[float | None]:
    return [e.value for e in events if isinstance(e, Reading)]


def test_a_control_id_reused_for_other_content_is_a_new_message_not_a_resend() -> None:
    codec = Hl7Codec("hl7", MonotonicUTC())
    events: list[DeviceEvent] = []
    for value in (97, 97, 75, 75, 75):  # a sender with a fixed control id, one message a second
        events += codec.feed(msg("SAME", value, ts=f"2026120207000{value % 7}"))
    # 97 then 75 are new content; the repeats are resends (used once, ACKed again).
    assert spo2(events) == [97.0, 75.0]
    assert codec.acks == ["CA"] * 5
    # A resend that re-stamps MSH-7 is still the same message, and so is content seen
    # before under this id (A, B, A): the sender repeating its earlier message.
    assert spo2(codec.feed(msg("SAME", 75, ts="20261202080000"))) == []
    assert spo2(codec.feed(msg("SAME", 97))) == []
    assert spo2(codec.feed(msg("SAME", 93))) == [93.0]


async def test_readings_of_different_connections_get_different_ids_and_a_resend_on_a_new_connection_is_used_once():
    events: list[DeviceEvent] = []
    async with listening(events) as (_listener, connect):
        for control_id, value in (("A", 97), ("B", 75), ("B", 75)):
            reader, writer = await connect()  # a new connection per message
            writer.write(msg(control_id, value))
            async with asyncio.timeout(5):
                await reader.readuntil(b"\x1c\r")
            writer.close()
    readings = [e for e in events if isinstance(e, Reading)]
    assert [r.value for r in readings] == [97.0, 75.0]  # B's resend on its own connection: used once
    normalizer = Normalizer(max_clock_skew_s=None)
    ctx = DeviceContext("hl7", "hl7", "ICU-1", tz=UTC, boot_id="s")
    received = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    ids = set()
    for r in readings:
        obs, _ = normalizer.normalize(r, ctx, received)
        assert obs is not None
        ids.add(obs.obs_id)
    assert len(ids) == 2  # same device time, same label, different connections: different ids


def test_two_rows_of_one_message_never_share_an_id() -> None:
    """The outside tester's SpO2 from two channels (1.3.1.1 and 1.4.1.1) at one time."""
    rows = (
        "MSH|^~\\&|S|F|||20261202070000||ORU^R01^ORU_R01|TWO|P|2.6|||AL|NE\rOBR|1|||x|||20261202070000\r"
        "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R\r"
        "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.4.1.1|80|262688^MDC_DIM_PERCENT^MDC|||||R\r"
    )
    readings = [e for e in Hl7Codec("hl7", MonotonicUTC()).feed(frame(rows.encode())) if isinstance(e, Reading)]
    assert [r.value for r in readings] == [97.0, 80.0]
    ctx = DeviceContext("hl7", "hl7", "ICU-1", tz=UTC, boot_id="s")
    received = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    ids = {
        obs.obs_id
        for obs, _ in (Normalizer(max_clock_skew_s=None).normalize(r, ctx, received) for r in readings)
        if obs
    }
    assert len(ids) == 2


def test_resends_are_known_by_content_whatever_the_order_or_segment_breaks() -> None:
    codec = Hl7Codec("hl7", MonotonicUTC())
    a, b = msg("ID", 97), msg("ID", 75)
    events: list[DeviceEvent] = []
    lf = a[:-2].replace(b"\r", b"\n") + a[-2:]  # the same message with LF segment breaks
    for block in (a, b, a, lf):  # A, B, A again, A with LF breaks
        events += codec.feed(block)
    assert spo2(events) == [97.0, 75.0] and codec.duplicates == 2


def test_two_senders_with_one_application_name_are_told_apart_by_facility() -> None:
    codec = Hl7Codec("hl7", MonotonicUTC())
    first = msg("ID", 97)
    second = first.replace(b"|S|F|", b"|S|G|")
    assert spo2(codec.feed(first) + codec.feed(second)) == [97.0, 97.0]


def test_the_resend_memory_keeps_digests_not_the_senders_bytes() -> None:
    seen = Seen(max_entries=8)
    for n in range(20):
        assert seen.first_time("S" * 60_000, f"{n}" + "X" * 60_000, b"body")
    keys = list(seen._messages) + list(seen._ids)
    assert len(keys) == 16 and all(len(k) == 16 for k in keys)
