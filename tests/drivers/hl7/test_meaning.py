"""Issue 17, what an HL7 row means: training/debug messages, corrections, unknown codes
and code/name mismatches, patient and bed checks, and the ACK details (AR for a missing
MSH-9/10, versions, enhanced-mode commit + application ACKs, control ids)."""

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import FixedClock
from appliance.core.model import DeviceEvent, Observation, Reading, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from appliance.normalize import DeviceContext, Normalizer
from drivers.hl7 import codec as codec_module
from drivers.hl7.codec import Hl7Codec
from drivers.hl7.message import parse
from drivers.hl7.mllp import frame
from drivers.hl7.pcd import SUPPORTED_VERSIONS

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SPO2 = "150456^MDC_PULS_OXIM_SAT_O2^MDC"


def oru(
    obx3: str = SPO2,
    *,
    value: str = "97",
    status: str = "R",
    proc: str = "P",
    version: str = "2.6",
    modes: str = "|",
    mid: str = "ID1",
    when: str = "20261122115900",
    pid: str = "PID|||P1^^^H^MR",
    pv1: str = "PV1||I|ICU^1^B1",
    unit: str = "262688^MDC_DIM_PERCENT^MDC",
) -> bytes:
    return (
        f"MSH|^~\\&|S^1^EUI-64|F|||20261122120000||ORU^R01^ORU_R01|{mid}|{proc}|{version}|||{modes}\r"
        f"{pid}\r{pv1}\rOBR|1|||x|||20261122115900\r"
        f"OBX|1|NM|{obx3}|1.1.1.1|{value}|{unit}|||||{status}|||{when}\r"
    ).encode()


def codec() -> Hl7Codec:
    return Hl7Codec("hl7", FixedClock(NOW))


def readings(events: list[DeviceEvent]) -> list[Reading]:
    return [e for e in events if isinstance(e, Reading)]


def acks(c: Hl7Codec) -> list[dict[str, list[str]]]:
    out = c.data_to_send()
    blocks = [b for b in out.split(b"\x1c\r") if b]
    return [{s.name: list(s.fields) for s in parse(b.lstrip(b"\x0b")).segments} for b in blocks]


# -- a) training and debugging ----------------------------------------------------------------
@pytest.mark.parametrize("proc", ["T", "D"])
def test_training_and_debug_messages_are_acked_counted_logged_once_and_never_used(proc, caplog):
    c = codec()
    events = [e for n in range(3) for e in c.feed(frame(oru(proc=proc, mid=f"M{n}")))]
    assert events == [] and c.acks == ["AA"] * 3 and c.training == 3 and c.stats.frames_bad == 0
    assert sum("training/debugging" in r.message for r in caplog.records) == 1
    # Production goes on as before on the same connection.
    assert [r.value for r in readings(c.feed(frame(oru(mid="M9"))))] == [97.0]


# -- b) corrections -----------------------------------------------------------------------------
def test_a_correction_names_the_observation_it_corrects():
    c, norm = codec(), Normalizer(max_clock_skew_s=None)
    ctx = DeviceContext("hl7", "hl7", "B1", patient_id="P1")
    first = readings(c.feed(frame(oru(mid="A"))))
    fixed = readings(c.feed(frame(oru(value="95", status="C", mid="B"))))
    other = readings(c.feed(frame(oru(value="94", status="C", mid="C", when="20261122115800"))))
    obs = [o for r in (*first, *fixed, *other) if isinstance(o := norm.normalize(r, ctx, NOW)[0], Observation)]
    original, correction, unmatched = obs
    assert "correction" in correction.flags and f"corrects:{original.obs_id}" in correction.flags
    assert correction.obs_id != original.obs_id and correction.value == 95.0
    # Another observation time is another row: a correction with nothing to match says so only.
    assert "correction" in unmatched.flags and not any(f.startswith("corrects") for f in unmatched.flags)
    assert c._seen.originals.matched == 1 and c._seen.originals.unmatched == 1


# -- c) unknown codes and mismatches -------------------------------------------------------------
@pytest.mark.parametrize(
    ("obx3", "flag"),
    [
        ("999999^MDC_PULS_OXIM_SAT_O2^MDC", "code_name_mismatch"),  # issue 14: filed under the name's term
        ("150456^MDC_PULS_RATE^MDC", "code_name_mismatch"),  # a known code under another name
        ("999998^MDC_NOT_A_THING^MDC", "unknown_code"),
        ("147842^MDC_ECG_CARD_BEAT_RATE^MDC", None),  # an alternative name of the code: no mismatch
        (SPO2, None),
    ],
)
def test_unknown_codes_and_mismatches_are_flagged_invalid(obx3, flag):
    unit = "264864^MDC_DIM_BEAT_PER_MIN^MDC" if "RATE" in obx3 else "262688^MDC_DIM_PERCENT^MDC"
    reading = readings(codec().feed(frame(oru(obx3, unit=unit))))[0]
    obs, _ = Normalizer(max_clock_skew_s=None).normalize(reading, DeviceContext("hl7", "hl7", "B1"), NOW)
    assert obs is not None
    if flag is None:
        assert obs.quality == "valid" and not obs.flags & {"unknown_code", "code_name_mismatch"}
    else:
        assert flag in obs.flags and obs.quality == "invalid"  # invalid: the rule engine takes no alarm from it


# -- d) patient and bed -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pid", "pv1", "paired", "bed", "mismatch"),
    [
        ("PID|||P1^^^H^MR", "PV1||I|ICU^1^B1", "P1", "B1", False),
        ("PID|||X9^^^H^MR~P1^^^H^PI", "PV1||I|ICU^1^B1", "P1", "ICU-1-B1", False),  # any id; whole location
        ("PID|||P2^^^H^MR", "PV1||I|ICU^1^B1", "P1", "B1", True),
        ("PID|||P1^^^H^MR", "PV1||I|ICU^1^B7", "P1", "B1", True),
        ("PID|||P2^^^H^MR", "PV1||I|ICU^1^B1", None, "B1", False),  # unpaired: quarantined anyway, no check
        ("PID|", "PV1|", "P1", "B1", False),  # no claims: nothing to compare
    ],
)
def test_patient_and_bed_are_checked_against_the_pairing(pid, pv1, paired, bed, mismatch):
    norm = Normalizer(max_clock_skew_s=None)
    ctx = DeviceContext("hl7", "hl7", bed, patient_id=paired)
    reading = readings(codec().feed(frame(oru(pid=pid, pv1=pv1))))[0]
    obs, events = norm.normalize(reading, ctx, NOW)
    assert obs is not None and not any(f.startswith(("patient:", "location:")) for f in obs.flags)
    assert obs.quarantine == (mismatch or paired is None)
    assert ("patient_mismatch" in obs.flags) == mismatch and (obs.quality == "invalid") == mismatch
    kinds = [e.kind for e in events]
    assert kinds == (["patient_mismatch"] if mismatch else [])


def test_a_mismatch_is_one_event_while_it_lasts():
    norm, c = Normalizer(max_clock_skew_s=None), codec()
    ctx = DeviceContext("hl7", "hl7", "B1", patient_id="P1")
    events: list[TechnicalEvent] = []
    for n, pid in enumerate(["P2", "P2", "P2", "P1", "P1", "P2"]):
        for r in readings(c.feed(frame(oru(pid=f"PID|||{pid}", mid=f"M{n}")))):
            events += norm.normalize(r, ctx, NOW)[1]
    assert [(e.kind, e.active) for e in events] == [
        (TechnicalKind.PATIENT_MISMATCH, True),
        (TechnicalKind.PATIENT_MISMATCH, False),
        (TechnicalKind.PATIENT_MISMATCH, True),
    ]
    assert norm.identity.mismatches == 4


# -- e) ACK details ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "text"),
    [
        (("ORU^R01^ORU_R01", ""), "MSH-9"),
        (("|ID1|", "||"), "MSH-10"),
        (("|2.6|", "|2.3|"), "'2.3'"),
        (("|2.6|", "|2.7|"), "'2.7'"),
    ],
)
def test_missing_type_or_control_id_and_unsupported_versions_are_rejected_naming_why(change, text):
    c = codec()
    events = c.feed(frame(oru().replace(change[0].encode(), change[1].encode(), 1)))
    (ack,) = acks(c)
    assert ack["MSA"][1] == "AR" and text in ack["ERR"][3] and c.stats.frames_bad == 1
    assert [e.kind for e in events if isinstance(e, TechnicalEvent)] == ["bad_frame"] and len(events) == 1


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_supported_versions_are_accepted(version):
    c = codec()
    assert len(readings(c.feed(frame(oru(version=version))))) == 1 and c.acks == ["AA"]


@pytest.mark.parametrize(
    ("modes", "value", "expected"),
    [
        ("AL|AL", "97", ["CA", "AA"]),
        ("AL|AL", "9x7", ["CE"]),
        ("AL|SU", "97", ["CA", "AA"]),
        ("SU|AL", "97", ["CA", "AA"]),
    ],
)
def test_enhanced_mode_sends_the_commit_then_the_application_ack(modes, value, expected):
    c = codec()
    c.feed(frame(oru(modes=modes, value=value)))
    sent = acks(c)
    assert [a["MSA"][1] for a in sent] == expected == c.acks
    assert all(a["MSA"][2] == "ID1" for a in sent)
    assert len({a["MSH"][10] for a in sent}) == len(sent)  # each ACK has its own control id


def test_ack_control_ids_are_unique_across_restarts(monkeypatch):
    c = codec()
    c.feed(frame(oru(mid="A")))
    before = acks(c)[0]["MSH"][10]
    # A restart: the counter starts again, with a new boot prefix.
    monkeypatch.setattr(codec_module, "_ids", iter(range(1, 10)))
    monkeypatch.setattr(codec_module, "BOOT_PREFIX", "0123456789ab")
    c2 = codec()
    c2.feed(frame(oru(mid="A")))
    after = acks(c2)[0]["MSH"][10]
    assert re.fullmatch(r"GW[0-9a-f]{12}\.\d+", before) and after == "GW0123456789ab.1" != before


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["P", "T", "D"]), st.sampled_from(["R", "F", "C", "X"]), st.integers(0, 200))
def test_invariant_only_production_rows_reach_the_gateway(proc, status, value):
    c = codec()
    out = readings(c.feed(frame(oru(proc=proc, status=status, value=str(value)))))
    assert (len(out) == 1) == (proc == "P") and len(c.acks) == 1
    assert all(("correction" in r.flags) == (status == "C") for r in out)
