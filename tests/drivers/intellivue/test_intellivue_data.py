"""Numerics, alerts and monitor time from IntelliVue poll replies; the real capture end to end."""

import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from appliance.core.model import Observation, from_json_line
from appliance.decode import decode_stream
from drivers.intellivue import wire
from drivers.intellivue.data import MonitorClock, NumericDecoder, alerts_of, state_flags
from drivers.intellivue.frame import FrameDecoder

CAPTURE = Path(__file__).parents[2] / "fixtures" / "intellivue" / "MPRawoutput1.raw"


def _u16(n):
    return n.to_bytes(2, "big")


def reply(objects, obj_code=wire.NOM_MOC_VMO_METRIC_NU, rel=0x1000):
    return wire.PollReply(1, True, 1, rel, None, obj_code, ((0, tuple(objects)),))


def nu(physio, state, unit, raw):
    return _u16(physio) + _u16(state) + _u16(unit) + raw.to_bytes(4, "big")


def test_compound_nbp_gives_three_numerics_under_one_label():
    body = nu(0x4A05, 0, 0x0F20, 0x00000078) + nu(0x4A06, 0, 0x0F20, 0x0000004E) + nu(0x4A07, 0x2000, 0x0F20, 0x7FFFFF)
    attrs = {0x0924: (0x00024A04).to_bytes(4, "big"), 0x094B: _u16(3) + _u16(len(body)) + body}
    got = NumericDecoder().numerics(reply([(0x0105, attrs)]))
    assert [(n.physio_id, n.value, n.special, n.label_id) for n in got] == [
        (0x4A05, 120.0, None, 0x00024A04),
        (0x4A06, 78.0, None, 0x00024A04),
        (0x4A07, None, "nan", 0x00024A04),
    ]
    assert state_flags(got[2].state) == {"unavailable"}


def test_label_from_the_first_reply_names_later_value_only_replies():
    decoder = NumericDecoder()
    text = "SpO\u2082".encode("utf-16-be") + b"\xfe\xff"
    first = {0x0924: (0x00024BB8).to_bytes(4, "big"), 0x0927: _u16(len(text)) + text}
    decoder.numerics(reply([(0x0102, first)]))
    later = decoder.numerics(reply([(0x0102, {0x0950: nu(0x4BB8, 0, 0x0220, 0x61), 0x9999: b"unknown"})]))
    assert [(n.label_text, n.value) for n in later] == [("SpO\u2082", 97.0)]


def test_relative_time_maps_through_the_mds_anchor_and_survives_wrap():
    clock = MonitorClock()
    clock.anchor({0x0987: bytes.fromhex("2021042211472600"), 0x098F: (0xFFFFF000).to_bytes(4, "big")})
    assert clock.at((0xFFFFF000 + 16000) % (1 << 32)) == datetime(2021, 4, 22, 11, 47, 28)  # past the wrap
    assert clock.at(0xFFFFF000 - 8000) == datetime(2021, 4, 22, 11, 47, 25)


def test_measurement_state_bits():
    assert state_flags(0x8001) == {"invalid_measurement", "msmt_alarm_inhibited"}
    assert state_flags(0x4C00) == {"questionable_measurement", "test_data", "demo_data"}
    assert state_flags(0) == frozenset()


def test_alert_lists_and_placeholders():
    text = "**Desat".encode("utf-16-be")
    info = _u16(1) + (0x10002).to_bytes(4, "big") + _u16(0) + _u16(0) + _u16(len(text)) + text
    entry = _u16(0x4BB8) + _u16(2) + _u16(0x0400) + _u16(0) + bytes(6) + _u16(0x0201) + _u16(len(info)) + info
    empty = _u16(0) + _u16(0) + _u16(0) + _u16(0) + bytes(6) + _u16(0x0201) + _u16(0)
    body = entry + empty
    attrs = {0x0902: _u16(2) + _u16(len(body)) + body, 0x0904: _u16(0) + _u16(0)}
    alerts = alerts_of(reply([(0x0200, attrs)], obj_code=wire.NOM_MOC_VMO_AL_MON))
    assert alerts is not None and len(alerts) == 1
    assert (alerts[0].priority, alerts[0].technical, alerts[0].text) == ("high", False, "**Desat")
    assert alerts[0].flag == "alarm_high_phys_0x4bb8_0x0002"
    assert alerts_of(reply([(0x0200, {})])) is None  # no list: keep what we knew


def test_real_capture_every_frame_and_its_values():
    """The whole JVSCapture recording: 2,887 frames, no FCS failure, the values it holds.

    What the capture contains (our own decode, checked frame by frame): an MP-series
    monitor's association accept (min poll period 0.5 s), its MDS create (clock
    2021-04-22 11:47:26), then six minutes of extended numeric polls in linked
    replies: HR 60 /min, PVC 0, eight ST leads, SpO2/pulse/perf NaN (no sensor),
    NBP unavailable since its last measurement at 2021-03-29 12:46:18.
    """
    decoder = FrameDecoder()
    frames = decoder.feed(CAPTURE.read_bytes())
    assert (len(frames), decoder.stats.frames_bad) == (2887, 0)
    out = io.StringIO()
    with CAPTURE.open("rb") as source:
        summary = decode_stream("intellivue", source, out, UTC)
    assert (summary.frames_ok, summary.frames_bad, summary.observations) == (2887, 0, 5776)
    observations = [o for line in out.getvalue().splitlines() if isinstance(o := from_json_line(line), Observation)]
    assert len(observations) == 5776
    per_metric = Counter(o.metric for o in observations)
    assert len(per_metric) == 16 and set(per_metric.values()) == {361}
    last = {o.metric: o for o in observations}
    hr = last["MDC_ECG_HEART_RATE"]
    assert (hr.code, hr.value, hr.unit, hr.quality) == (147842, 60.0, "/min", "valid")
    assert hr.time == datetime(2021, 4, 22, 11, 53, 36, 240000, tzinfo=UTC)
    assert last["MDC_ECG_V_P_C_CNT"].value == 0.0
    st = {m: last[m].value for m in per_metric if m.startswith("MDC_ECG_AMPL_ST_")}
    assert st == {
        "MDC_ECG_AMPL_ST_I": -0.9,
        "MDC_ECG_AMPL_ST_II": -1.5,
        "MDC_ECG_AMPL_ST_III": -0.6,
        "MDC_ECG_AMPL_ST_AVR": 1.2,
        "MDC_ECG_AMPL_ST_AVL": -0.1,
        "MDC_ECG_AMPL_ST_AVF": -1.0,
        "MDC_ECG_AMPL_ST_V": 0.8,
        "MDC_ECG_AMPL_ST_MCL": 0.8,
    }
    spo2 = last["MDC_PULS_OXIM_SAT_O2"]
    assert (spo2.value, spo2.quality) == (None, "invalid") and {"float_nan", "invalid_measurement"} <= spo2.flags
    nbp = last["MDC_PRESS_BLD_NONINV_SYS"]
    assert (nbp.value, nbp.quality, nbp.unit) == (None, "invalid", "mm[Hg]") and "unavailable" in nbp.flags
    assert nbp.time == datetime(2021, 3, 29, 12, 46, 18, tzinfo=UTC)
