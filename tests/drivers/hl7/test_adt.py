"""The ADT reader and codec: what the census is told, and what the sender is ACKed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import MonotonicUTC
from appliance.core.model import TechnicalEvent
from drivers.hl7.adt import AdtCodec, AdtEvent, AdtRefused, read_adt
from drivers.hl7.message import parse
from drivers.hl7.mllp import frame
from tests.appliance.clinical.adt_messages import adt


def test_an_admission_names_patient_ids_bed_visit_and_consent():
    ev = read_adt(parse(adt("A01", "MRN-1^^^HOSP^MR~WB-77^^^HOSP^WB", "ICU^3^ICU-3", con="R")))
    assert ev.trigger == "A01" and ev.patient_ids == ("MRN-1", "WB-77") and ev.patient_id == "MRN-1"
    assert ev.location == ("ICU", "3", "ICU-3") and ev.visit == "V-MRN-1" and ev.consent == "withheld"
    assert read_adt(parse(adt("A08", "MRN-1", con="A"))).consent == "granted"
    assert read_adt(parse(adt("A08", "MRN-1", con="P"))).consent == ""  # pending says nothing


def test_a_transfer_names_the_prior_bed():
    ev = read_adt(parse(adt("A02", "MRN-1", "ICU^4^ICU-4", prior="ICU^3^ICU-3")))
    assert ev.prior_location == ("ICU", "3", "ICU-3")


@pytest.mark.parametrize(
    ("message", "outcome", "why"),
    [
        (adt("A04", "MRN-1", "ICU^3^ICU-3"), "reject", "unsupported message type ADT^A04"),
        (adt("A01", "", "ICU^3^ICU-3"), "error", "PID-3 patient identifier missing"),
        (adt("A01", "MRN-1", ""), "error", "ADT^A01 without a bed"),
        (adt("A01", "MRN-1", "ICU^3^ICU-3", version="2.1"), "reject", "unsupported version"),
        (adt("A01", "MRN-1", "ICU^3^ICU-3").replace(b"\rPID|||MRN-1||Doe^Jane", b""), "error", "PID segment missing"),
        (adt("A01", "MRN-1", "ICU^3^ICU-3", con="A") + b"CON|2|X|||||||||R\r", "error", "CON segments disagree"),
    ],
)
def test_what_the_census_cannot_take_is_refused_with_a_reason(message, outcome, why):
    with pytest.raises(AdtRefused) as info:
        read_adt(parse(message))
    assert info.value.verdict.outcome == outcome and why in info.value.verdict.text


class Census:
    """A stand-in census: refuses an A03 of a patient it never admitted."""

    def __init__(self) -> None:
        self.taken: list[AdtEvent] = []

    def on_adt(self, ev: AdtEvent) -> str:
        if ev.trigger == "A03" and not any(t.patient_id == ev.patient_id for t in self.taken):
            return f"A03 for patient {ev.patient_id}, who is not in the census"
        self.taken.append(ev)
        return ""


def acks(codec: AdtCodec) -> list[tuple[str, str]]:
    out = codec.data_to_send().decode()
    return re.findall(r"MSA\|(\w\w)\|([^\r|]*)", out)


def test_the_codec_acks_what_the_census_decided_and_uses_a_resend_once():
    census = Census()
    codec = AdtCodec("adt", MonotonicUTC(), on_adt=census.on_adt)
    a03 = adt("A03", "MRN-9", control_id="D1")
    a01 = adt("A01", "MRN-1", "ICU^3^ICU-3", control_id="M1")
    events = codec.feed(frame(a03) + frame(a01) + frame(a01) + frame(b"garbage\r"))
    assert acks(codec) == [("AE", "D1"), ("AA", "M1"), ("AA", "M1"), ("AR", "")]
    assert [e.patient_id for e in census.taken] == ["MRN-1"]  # the resend was ACKed, not used twice
    assert codec.duplicates == 1 and codec.events == 1 and codec.stats.frames_bad == 2
    (bad,) = events
    assert isinstance(bad, TechnicalEvent) and bad.kind == "bad_frame" and "not in the census" in bad.detail


def test_a_training_message_is_acked_and_never_moves_a_patient():
    census = Census()
    codec = AdtCodec("adt", MonotonicUTC(), on_adt=census.on_adt)
    codec.feed(frame(adt("A01", "MRN-1", "ICU^3^ICU-3", processing="T")))
    assert acks(codec) == [("AA", "A01-MRN-1-ICU.3.ICU-3")] and census.taken == []


messages = st.builds(
    adt,
    st.sampled_from(["A01", "A02", "A03", "A08", "A11", "A13", "A04", "", "A0\x001"]),
    st.sampled_from(["MRN-1", "MRN-2~WB-2", "", '""', "X" * 200, "MRN-3^^^H^MR~MRN-1"]),
    st.sampled_from(["ICU^1^ICU-1", "ICU^2^ICU-2", "", "^^", "ICU^1"]),
    con=st.sampled_from(["", "A", "R", "Z"]),
)


# Noise inside a message, never the MLLP frame bytes (framing damage: tests/drivers/hl7/test_hardening.py).
noise = st.binary(max_size=8).filter(lambda b: b"\x0b" not in b and b"\x1c" not in b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(messages, noise, st.integers(0, 400)), max_size=12))
def test_any_adt_stream_gets_one_ack_per_message_and_never_breaks_the_census(stream):
    from appliance.clinical.census import Census

    census = Census()
    codec = AdtCodec("adt", MonotonicUTC(), on_adt=lambda ev: "" if census.apply(ev).ok else "refused")
    sent = 0
    for message, noise, cut in stream:
        damaged = message[:cut] + noise + message[cut:] if noise else message
        codec.feed(frame(damaged))
        sent += 1
    assert len(acks(codec)) == sent  # every message is answered (AA, AE or AR), none crashes the codec
    stays = census.stays()
    assert len({s.location for s in stays}) == len(stays) and len({s.patient_id for s in stays}) == len(stays)
