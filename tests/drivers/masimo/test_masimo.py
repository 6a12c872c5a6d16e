from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import Reading, TechnicalEvent
from drivers.masimo.codec import MAX_LINE_BYTES, MasimoCodec
from hil.masimo_sim import VARIANTS, masimo_line
from hil.scenarios import Vitals

CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance" / "masimo" / "lines.txt"
RAD8 = (
    b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)
RADICAL5 = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n"


def readings(events):
    return {e.label: e for e in events if isinstance(e, Reading)}


def technical(events):
    return [e for e in events if isinstance(e, TechnicalEvent)]


def feed_all(data: bytes, chunk: int | None = None):
    codec = MasimoCodec("m1")
    if chunk is None:
        return codec, codec.feed(data)
    events = []
    for i in range(0, len(data), chunk):
        events += codec.feed(data[i : i + chunk])
    return codec, events


def test_conformance_file_holds_the_two_documented_lines():
    if CONFORMANCE.exists():
        assert CONFORMANCE.read_bytes() == RAD8 + RADICAL5


def test_rad8_conformance_line():
    codec, events = feed_all(RAD8)
    r = readings(events)
    assert r["SPO2"].value == 98 and r["SPO2"].unit == "%"
    assert r["BPM"].value == 97
    assert r["PI"].value == pytest.approx(3.60)
    for label in ("SPCO", "SPMET", "DESAT", "PIDELTA"):
        assert r[label].value is None
    assert r["SPO2"].device_time == datetime(2016, 2, 22, 22, 47, 45)
    assert r["SPO2"].flags == {"masimo_set"}
    assert codec.serial_number == "0000056661"
    assert (codec.stats.frames_ok, codec.stats.frames_bad) == (1, 0)


def test_radical5_conformance_line():
    _, events = feed_all(RADICAL5)
    r = readings(events)
    assert (r["SPO2"].value, r["BPM"].value, r["PI"].value) == (97, 64, 11.82)
    assert r["SPO2"].flags == {"masimo_set", "alarm_silenced"}
    assert r["SPO2"].device_time == datetime(2010, 9, 15, 15, 10, 29)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_byte_at_a_time_and_odd_chunks_equal_one_read(chunk):
    data = RAD8 + RADICAL5 + RAD8
    _, whole = feed_all(data)
    _, pieces = feed_all(data, chunk)
    assert pieces == whole
    assert len([e for e in whole if isinstance(e, Reading)]) == 7 + 3 + 7


def test_many_frames_in_one_read():
    codec, events = feed_all(RADICAL5 * 50)
    assert codec.stats.frames_ok == 50
    assert [e.seq for e in events if isinstance(e, Reading) and e.label == "SPO2"] == list(range(1, 51))


@pytest.mark.parametrize("eol", [b"\r\n", b"\n\r", b"\n", b"\r"])
def test_every_line_ending(eol):
    codec, events = feed_all(RADICAL5.replace(b"\r\n", eol) * 3)
    assert codec.stats.frames_ok == 3 and codec.stats.frames_bad == 0
    assert len(readings(events)) == 3


def test_leading_and_embedded_nuls_are_ignored():
    codec, events = feed_all(b"\x00\x00\x00" + RADICAL5[:10] + b"\x00" + RADICAL5[10:])
    assert readings(events)["SPO2"].value == 97
    assert codec.stats.frames_bad == 0


def test_partial_first_line_is_one_bad_frame_then_good_lines_decode():
    codec, events = feed_all(RAD8[40:] + RADICAL5)
    assert codec.stats.frames_bad == 1
    assert technical(events)[0].kind == "bad_frame"
    assert readings(events)["BPM"].value == 64


def test_overlong_line_is_dropped_and_counted_once():
    codec, events = feed_all(b"A" * (MAX_LINE_BYTES * 3) + b"\r\n" + RADICAL5)
    assert codec.stats.frames_bad == 1
    assert readings(events)["SPO2"].value == 97
    codec, events = feed_all(b"X" * (MAX_LINE_BYTES + 10) + b"\r\n" + RADICAL5, chunk=100)
    assert codec.stats.frames_bad == 1 and codec.stats.frames_ok == 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_model_variant_round_trips(variant):
    when = datetime(2026, 3, 4, 5, 6, 7)
    line = masimo_line(variant, when, Vitals(spo2=91, pulse=123, pi=1.25))
    codec, events = feed_all(line)
    r = readings(events)
    assert (r["SPO2"].value, r["BPM"].value, r["PI"].value) == (91, 123, 1.25)
    assert r["SPO2"].device_time == when
    assert codec.stats.frames_bad == 0


def test_rad7_colour_fields_and_pi_without_percent():
    line = masimo_line("rad7", datetime(2026, 1, 1), Vitals(95, 80, 0.55))
    r = readings(feed_all(line)[1])
    assert r["PI"].value == 0.55
    assert r["SPHB"].value == 13.1 and r["SPHB"].unit == "g/dl"
    assert r["SPCO"].value is None  # "SPCO=--%"
    assert "EXC1" not in r  # exception words are flags, not readings


def test_sensor_off_zeros_become_none_and_emit_edge_events():
    off = b"01/01/26 00:00:01 SPO2=000% BPM=000 PI=00.00% ALARM=0000 EXC=000828\r\n"
    on = b"01/01/26 00:00:02 SPO2=097% BPM=070 PI=02.00% ALARM=0000 EXC=000800\r\n"
    codec = MasimoCodec("m1")
    first = codec.feed(off)
    r = readings(first)
    assert r["SPO2"].value is None and r["BPM"].value is None
    assert {"sensor_off", "pulse_search"} <= r["SPO2"].flags
    assert [(e.kind, e.active) for e in technical(first)] == [("sensor_off", True)]
    assert technical(codec.feed(off)) == []
    assert [(e.kind, e.active) for e in technical(codec.feed(on))] == [("sensor_off", False)]


def test_alarm_bits_become_named_flags_and_low_battery_event():
    line = b"01/01/26 00:00:01 SPO2=085% BPM=070 PI=02.00% ALARM=8052 EXC=200800\r\n"
    events = MasimoCodec("m1").feed(line)
    r = readings(events)
    assert {"alarm_spo2_low", "alarm_active", "low_battery", "alarm_0x008000"} <= r["SPO2"].flags
    # SpCO low confidence concerns the SpCO value only.
    assert "spco_low_confidence" not in r["SPO2"].flags
    assert ("low_battery", True) in [(e.kind, e.active) for e in technical(events)]


def test_unknown_fields_are_kept_as_readings():
    line = b"01/01/26 00:00:01 SPO2=097% BPM=070 NEWTHING=12.5 ALARM=0000 EXC=000800\r\n"
    r = readings(MasimoCodec("m1").feed(line))
    assert r["NEWTHING"].value == 12.5


def test_ascii2_trend_line_is_reported_as_wrong_mode_once():
    trend = b"02/22/16 22:47:45 SpO2=000 PR=000 PI=00.00 EXC=820:OffPat,Search\r\n"
    codec = MasimoCodec("m1")
    kinds = [e.kind for e in technical(codec.feed(trend * 3))]
    assert kinds.count("wrong_mode") == 1 and kinds.count("bad_frame") == 3


@pytest.mark.parametrize(
    "line",
    [
        b"13/45/16 22:47:45 SPO2=098%\r\n",  # impossible date
        b"02/22/16 22:47:45\r\n",  # no fields
        b"02/22/16 22:47:45 SPO2=098% EXC=ZZZ\r\n",  # EXC not hex
        b"hello world\r\n",
    ],
)
def test_malformed_lines_are_counted_and_skipped(line):
    codec, events = feed_all(line + RADICAL5)
    assert codec.stats.frames_bad == 1
    assert readings(events)["SPO2"].value == 97


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=600), cuts=st.lists(st.integers(0, 800), max_size=8))
def test_fuzz_garbage_never_raises_and_good_line_after_eol_decodes(garbage, cuts):
    data = garbage + b"\r\n" + RADICAL5
    codec = MasimoCodec("m1")
    events = []
    prev = 0
    for cut in sorted({c for c in cuts if c < len(data)}):
        events += codec.feed(data[prev:cut])
        prev = cut
    events += codec.feed(data[prev:])
    spo2 = [e for e in events if isinstance(e, Reading) and e.label == "SPO2"]
    assert spo2 and spo2[-1].value == 97 and spo2[-1].device_time == datetime(2010, 9, 15, 15, 10, 29)


# -- issue #14 finding 10: two-digit years and device times that cannot be trusted --------
@pytest.mark.parametrize("yy", [0, 16, 68, 69, 99])
def test_two_digit_years_are_20yy(yy):
    line = RADICAL5.replace(b"/10 ", b"/%02d " % yy)
    r = readings(feed_all(line)[1])
    assert r["SPO2"].device_time == datetime(2000 + yy, 9, 15, 15, 10, 29)


@pytest.mark.parametrize(
    "stamp", [b"02/30/16 10:00:00", b"13/01/16 10:00:00", b"01/01/16 24:00:00", b"01/01/16 10:60:00", b"\xd9\xa3"]
)
def test_an_impossible_device_time_is_one_bad_frame_and_the_next_line_decodes(stamp):
    codec, events = feed_all(stamp + RADICAL5[17:] + RADICAL5)
    assert (codec.stats.frames_ok, codec.stats.frames_bad) == (1, 1)
    assert readings(events)["SPO2"].device_time == datetime(2010, 9, 15, 15, 10, 29)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789/: -", min_size=17, max_size=17))
def test_any_stamp_like_prefix_never_raises(prefix):
    feed_all(prefix.encode() + RADICAL5[17:])


@pytest.mark.parametrize("cut", [1, 8, 17, 18, 40, 60, 100])
@pytest.mark.parametrize("chunk", [None, 1])
def test_a_line_cut_short_never_lends_its_time_to_the_next_line(cut, chunk):
    # The oximeter lost power mid-line (a device reboot with the cable in): the head of
    # one line, no EOL, then the next line after the boot. The head is one bad frame;
    # every reading of the next line carries the next line's own time.
    before = masimo_line("radical7", datetime(2026, 5, 1, 10, 0, 1), Vitals(97, 72, 3.5))
    after = masimo_line("radical7", datetime(2026, 5, 1, 10, 0, 9), Vitals(88, 80, 3.5))
    codec, events = feed_all(before[:cut] + after, chunk)
    got = [e for e in events if isinstance(e, Reading)]
    assert got and {e.device_time for e in got} == {datetime(2026, 5, 1, 10, 0, 9)}
    assert readings(events)["SPO2"].value == 88.0
    assert [e.kind for e in technical(events)] == ["bad_frame"]
    assert codec.stats.frames_bad == 1 and codec.stats.frames_ok == 1
