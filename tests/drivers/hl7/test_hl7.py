"""HL7 v2 / MLLP: framing, parsing, escapes, every IHE example from the conformance set,
ACK rules, alert lifecycle, fuzzing."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import FixedClock
from appliance.core.model import Reading, TechnicalEvent
from appliance.normalize import DeviceContext, Normalizer
from drivers.hl7.codec import ALERT_CARRIER, Hl7Codec
from drivers.hl7.message import Delimiters, Hl7Error, escape, parse, parse_ts, unescape
from drivers.hl7.mllp import MllpDecoder, frame
from drivers.hl7.pcd import Verdict, build_ack

EXAMPLES = Path(__file__).parents[2] / "fixtures" / "hl7"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def codec() -> Hl7Codec:
    return Hl7Codec("hl7", FixedClock(NOW))


def ack_fields(block: bytes) -> dict[str, list[str]]:
    msg = parse(block[1:-2])
    return {s.name: list(s.fields) for s in msg.segments}


# -- MLLP ------------------------------------------------------------------------------
def test_mllp_blocks_noise_restart_and_byte_at_a_time():
    a, b = b"MSH|^~\\&|A", b"MSH|^~\\&|B"
    stream = b"junk" + frame(a) + b"\x0bpartial" + frame(b) + b"\x0b\x1cX\x1c\r"
    decoder = MllpDecoder()
    assert decoder.feed(stream) == [a, b, b"\x1cX"]  # an FS not followed by CR is data
    assert decoder.stats.blocks_bad == 1  # the restarted block
    one_by_one = MllpDecoder()
    assert [m for x in stream for m in one_by_one.feed(bytes([x]))] == [a, b, b"\x1cX"]


# -- parsing ---------------------------------------------------------------------------
def test_escapes_are_undone_after_splitting():
    d = Delimiters()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f\X41\g\.br\h", d) == "a|b^c&d~e\\fAg\nh"
    assert unescape(r"keep \Z\ as sent", d) == r"keep \Z\ as sent"
    assert unescape(escape("x|y^z&w~v\\u", d), d) == "x|y^z&w~v\\u"
    msg = parse(b"MSH|^~\\&|A\rOBX|1|ST|1^X^MDC||pipe \\F\\ and hat \\S\\^second\r")
    obx = msg.first("OBX")
    assert msg.get(obx, 5) == "pipe | and hat ^" and msg.get(obx, 5, 2) == "second"


def test_delimiters_come_from_msh_and_lf_is_tolerated():
    msg = parse(b"MSH#$%*@#APP#FAC\nPID###12345$$$A$MR\r\nOBX#1#NM#150456$MDC_PULS_OXIM_SAT_O2$MDC##97\n")
    assert msg.delimiters == Delimiters("#", "$", "%", "*", "@")
    assert msg.get(msg.msh, 3) == "APP" and msg.get(msg.first("PID"), 3, 4) == "A"
    assert [s.name for s in msg.segments] == ["MSH", "PID", "OBX"]


@pytest.mark.parametrize("bad", [b"", b"PID|1\r", b"MSH|^~|X\r", b"MSH|^~\\&|A\rbad|x\r"])
def test_unreadable_messages_raise_hl7_error(bad):
    with pytest.raises(Hl7Error):
        parse(bad)


def test_timestamps_with_and_without_zone():
    assert parse_ts("20150122115000") == datetime(2015, 1, 22, 11, 50)
    assert parse_ts("20120111150457-0600") == datetime(2012, 1, 11, 15, 4, 57, tzinfo=timezone(timedelta(hours=-6)))
    assert parse_ts("202001") == datetime(2020, 1, 1)
    assert parse_ts("2020-01-01") is None and parse_ts("20201301") is None


# -- the IHE examples -------------------------------------------------------------------
def normalized(events):
    norm, ctx = Normalizer(max_clock_skew_s=None), DeviceContext("hl7", "hl7", "B1", tz=UTC)
    out = {}
    for e in events:
        if isinstance(e, Reading):
            obs, _ = norm.normalize(e, ctx, NOW)
            assert obs is not None, e.label
            out[obs.metric] = obs
    return out


def test_philips_monitor_pcd01_values_units_times_and_commit_ack():
    c = codec()
    obs = normalized(c.feed(frame(example("pcd01-oru-r01-philips-monitor.hl7"))))
    assert obs["MDC_PRESS_BLD_NONINV_SYS"].value == 117.0 and obs["MDC_PRESS_BLD_NONINV_SYS"].unit == "mm[Hg]"
    assert obs["MDC_PRESS_BLD_NONINV_SYS"].time == datetime(2015, 1, 22, 11, 50, tzinfo=UTC)  # OBX-14
    # OBX-18 of the NIBP VMD row (1.1.0.0) names the equipment of the values below it.
    assert "equipment:0600dc750001" in obs["MDC_PRESS_BLD_NONINV_SYS"].flags
    # 147842 arrives as MDC_ECG_CARD_BEAT_RATE and is filed under the one name the rules use.
    assert obs["MDC_ECG_HEART_RATE"].value == 80.0 and obs["MDC_ECG_HEART_RATE"].unit == "/min"
    assert obs["MDC_ECG_HEART_RATE"].time == datetime(2015, 1, 22, 18, 26, 56, tzinfo=UTC)  # OBR-7
    assert obs["MDC_PULS_OXIM_SAT_O2"].value == 99.0 and obs["MDC_ECG_TIME_PD_QTc"].unit == "ms"
    # OBX-11 "X" on every row of this example: the checklist maps X to invalid.
    assert {o.quality for o in obs.values()} == {"invalid"}
    ack = ack_fields(c.data_to_send())
    assert ack["MSA"][1:3] == ["CA", "HP0122182658686QQ000CND119C0WS61"]  # MSH-15 AL, MSH-16 NE
    assert ack["MSH"][9] == "ACK^R01^ACK" and ack["MSH"][12] == "2.6"


def test_acme_episodic_nbp_ucum_units_and_zone_offsets():
    c = codec()
    obs = normalized(c.feed(frame(example("pcd01-oru-r01-acme-episodic-nbp.hl7"))))
    assert obs["MDC_PULS_RATE_NON_INV"].unit == "/min" and obs["MDC_PULS_RATE_NON_INV"].value == 63.0
    assert "equipment:080019FFFE3ED02D172.16.172.135^GATEWAY_ACME" in obs["MDC_PULS_RATE_NON_INV"].flags  # OBX-18
    assert obs["MDC_PRESS_BLD_NONINV_MEAN"].quality == "valid"
    assert obs["MDC_PRESS_BLD_NONINV_SYS"].time == datetime(2011, 6, 2, 4, 58, 42, tzinfo=UTC)
    assert c.acks == ["CA"]


def test_acme_bp_application_ack_and_time_from_obr():
    c = codec()
    obs = normalized(c.feed(frame(example("pcd01-oru-r01-acme-bp-wcm.hl7"))))
    assert obs["MDC_PRESS_BLD_NONINV_DIA"].value == 80.0
    assert obs["MDC_PRESS_BLD_NONINV_DIA"].time == datetime(2009, 8, 13, 4, 57, 15, tzinfo=UTC)  # +0500
    assert c.acks == ["AA"]  # MSH-15 NE, MSH-16 AL: application accept


def test_r40_alert_start_and_end_drive_one_device_alarm():
    c = codec()
    start = normalized(c.feed(frame(example("pcd04-oru-r40-bbraun-occlusion-start.hl7"))))
    carrier = start["MDC_EVT_ALARM"]
    assert "alarm_tech_196940_69985" in carrier.flags and carrier.value is None
    end = [e for e in c.feed(frame(example("pcd04-oru-r40-bbraun-occlusion-end.hl7"))) if isinstance(e, Reading)]
    claims = ("patient:", "location:")  # PID-3 / PV1-3, checked by the gateway (appliance/identity.py)
    assert [(r.label, {f for f in r.flags if not f.startswith(claims)}) for r in end] == [
        (ALERT_CARRIER, {"alert_report"})
    ]
    assert c.acks == ["CA", "CA"]


def test_r40_physiological_alert_rides_on_its_metric():
    c = codec()
    events = c.feed(frame(example("pcd04-oru-r40-mindray-low-spo2-start.hl7")))
    spo2 = normalized(events)["MDC_PULS_OXIM_SAT_O2"]
    assert spo2.value == 88.0 and "alarm_medium_phys_196670_150456" in spo2.flags
    # Later vitals from this sender keep the active alert, so the engine does not see it end.
    later = c.feed(frame(example("pcd01-oru-r01-acme-episodic-nbp.hl7")))
    assert all("alarm_medium_phys_196670_150456" in r.flags for r in later if isinstance(r, Reading))


@pytest.mark.parametrize(
    ("name", "code"), [("ack-aa-stepstone.hl7", "AA"), ("ack-o15-ca-piv.hl7", "CA"), ("rrg-o16-ar-piv.hl7", "AR")]
)
def test_acks_from_the_examples_are_read_and_never_acknowledged(name, code):
    c = codec()
    assert c.feed(frame(example(name))) == []
    assert c.data_to_send() == b"" and c.responses[0].split()[1] == code and c.stats.frames_bad == 0


# -- ACK rules -------------------------------------------------------------------------
ORU = (
    "MSH|^~\\&|S|F|||20260101120000||ORU^R01^ORU_R01|ID1|P|2.6|||{accept}|{app}\r"
    "OBR|1|||x|||20260101120000\rOBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|{value}|262688^MDC_DIM_PERCENT^MDC\r"
)


@pytest.mark.parametrize(
    ("accept", "app", "value", "expected"),
    [
        ("", "", "97", "AA"),  # original mode
        ("", "", "9x7", "AE"),  # NM that is not a number
        ("AL", "NE", "97", "CA"),
        ("AL", "NE", "9x7", "CE"),
        ("NE", "AL", "9x7", "AE"),
        ("ER", "NE", "97", None),  # errors only: a good message gets no ACK
        ("ER", "NE", "9x7", "CE"),
        ("NE", "NE", "97", None),
    ],
)
def test_ack_modes(accept, app, value, expected):
    c = codec()
    events = c.feed(frame(ORU.format(accept=accept, app=app, value=value).encode()))
    assert c.acks == ([expected] if expected else [])
    if expected and expected[1] == "E":
        assert [e.kind for e in events if isinstance(e, TechnicalEvent)] == ["bad_frame"]
        assert "ERR|||102^" in c.data_to_send().decode()
        assert not any(isinstance(e, Reading) for e in events)  # an errored message is not half-used


@pytest.mark.parametrize(
    ("change", "code", "err"),
    [
        (("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"), "AR", "200"),
        (("|P|2.6", "|P|3.0"), "AR", "203"),
        (("|P|2.6", "|X|2.6"), "AR", "202"),
        (("|ID1|", "||"), "AR", "101"),  # no control id: nothing to acknowledge it by
        (("OBR|1|||x|||20260101120000\r", ""), "AE", "100"),
    ],
)
def test_reject_and_error_reasons(change, code, err):
    c = codec()
    c.feed(frame(ORU.format(accept="", app="", value="97").replace(*change).encode()))
    out = c.data_to_send().decode()
    assert c.acks == [code] and f"ERR|||{err}^" in out


def test_wrong_pcd_profile_oid_is_an_error_and_garbage_is_rejected():
    wrong = ORU.format(accept="", app="", value="97").replace(
        "|||\rOBR", "||||||||IHE_PCD_001^IHE PCD^1.2.3^ISO\rOBR", 1
    )
    c = codec()
    c.feed(frame(wrong.encode()))
    assert c.acks == ["AE"]
    c.feed(frame(b"not hl7 at all"))
    assert c.acks == ["AE", "AR"]


def test_ack_structure_matches_the_example_acks():
    msg = parse(ORU.format(accept="", app="", value="97").encode())
    ack = build_ack(msg, Verdict(), NOW, "GW7")
    assert ack is not None
    fields = ack_fields(frame(ack))
    assert (
        fields["MSH"][9] == "ACK^R01^ACK" and fields["MSH"][10] == "GW7" and fields["MSH"][7] == "20261122120000+0000"
    )
    assert fields["MSA"] == ["MSA", "AA", "ID1"]


def test_a_resent_message_is_acked_again_but_used_once():
    c = codec()
    block = frame(example("pcd01-oru-r01-acme-episodic-nbp.hl7"))
    first = [e for e in c.feed(block) if isinstance(e, Reading)]
    again = c.feed(block)
    assert len(first) == 4 and again == [] and c.acks == ["CA", "CA"] and c.duplicates == 1


def test_bare_file_of_several_messages():
    c = Hl7Codec("hl7", FixedClock(NOW), unframed=True)  # configured: a file or an unframed port
    data = example("pcd01-oru-r01-acme-bp-wcm.hl7") + b"\r\n" + example("pcd01-oru-r01-acme-episodic-nbp.hl7")
    events = c.feed(data) + c.finish()
    assert sum(isinstance(e, Reading) for e in events) == 3 + 4 and c.data_to_send() == b""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_garbage_then_a_good_message(garbage):
    c = codec()
    c.feed(b"\x0b" + garbage.replace(b"\x0b", b"") + b"\x1c\r")
    after = [e for e in c.feed(frame(example("pcd01-oru-r01-acme-bp-wcm.hl7"))) if isinstance(e, Reading)]
    assert len(after) == 3


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_oru_never_raises(data):
    raw = bytearray(example("pcd01-oru-r01-philips-monitor.hl7"))
    for _ in range(data.draw(st.integers(1, 10))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    c = codec()
    c.feed(frame(bytes(raw).replace(b"\x0b", b"").replace(b"\x1c", b"")))
    # At most one answer (none only when the mutated MSH-15/16 read as NE), or the commit
    # and application ACKs of enhanced mode AL/AL; never an exception.
    assert len(c.acks) <= 1 or c.acks == ["CA", "AA"]
