"""Every worked example of shared/protocols/ble-health.md, plus fuzzing of every decoder."""

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from drivers.ble.codec import CHARACTERISTICS, HexLineCodec, MeasurementStream
from drivers.ble.glucose import (
    RacpOp,
    decode_glucose,
    decode_glucose_context,
    decode_racp,
    racp_abort,
    racp_report_after,
    racp_report_all,
    racp_report_count,
)
from drivers.ble.numbers import BleDecodeError
from drivers.ble.vitals import (
    decode_battery,
    decode_blood_pressure,
    decode_heart_rate,
    decode_plx_continuous,
    decode_plx_features,
    decode_plx_spot,
    decode_temperature,
    decode_weight,
)


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def vals(m):
    return {(v.label, v.value, v.unit) for v in m.values}


# -- heart rate ------------------------------------------------------------------
def test_heart_rate_smartgattlib_vector():
    m = decode_heart_rate(h("16 48 54 01 EC 02"))
    assert [(v.label, v.value) for v in m.values] == [("HR", 72.0), ("RR", 332.031), ("RR", 730.469)]
    assert not m.conditions  # contact supported and detected


def test_heart_rate_opentracks_vectors_and_energy():
    assert vals(decode_heart_rate(h("02 3C"))) == {("HR", 60.0, "/min")}
    assert vals(decode_heart_rate(h("01 01 01"))) == {("HR", 257.0, "/min")}
    assert vals(decode_heart_rate(h("08 48 10 27"))) == {("HR", 72.0, "/min"), ("ENERGY", 10000.0, "kJ")}


def test_heart_rate_contact_lost_is_sensor_off():
    m = decode_heart_rate(h("04 48"))  # feature supported, contact not detected
    assert m.conditions == {"sensor_off"}
    assert "sensor_off" in m.flags


def test_heart_rate_odd_rr_bytes_are_a_bad_frame():
    with pytest.raises(BleDecodeError, match="RR"):
        decode_heart_rate(h("10 48 54"))
    with pytest.raises(BleDecodeError):
        decode_heart_rate(h("01 48"))  # uint16 HR announced, one byte sent


# -- PLX -------------------------------------------------------------------------
def test_plx_spot_examples():
    assert vals(decode_plx_spot(h("00 61 00 48 00"))) == {("SPO2", 97.0, "%"), ("PR", 72.0, "/min")}
    m = decode_plx_spot(h("07 62 00 3C 00 E8 07 03 05 0E 1E 00 80 00 20 00 00"))
    assert vals(m) == {("SPO2", 98.0, "%"), ("PR", 60.0, "/min")}
    assert m.device_time == datetime(2024, 3, 5, 14, 30)
    assert {"validated", "low_perfusion"} <= m.flags
    assert m.extra == {"measurement_status": 0x0080, "device_sensor_status": 0x000020}


def test_plx_spot_clock_not_set_drops_the_timestamp():
    m = decode_plx_spot(h("11 62 00 3C 00 E8 07 03 05 0E 1E 00"))
    assert m.device_time is None
    assert "device_clock_not_set" in m.flags


def test_plx_continuous_examples():
    assert vals(decode_plx_continuous(h("00 60 00 50 00"))) == {("SPO2", 96.0, "%"), ("PR", 80.0, "/min")}
    m = decode_plx_continuous(h("00 60 00 FF 07"))
    pr = next(v for v in m.values if v.label == "PR")
    assert pr.value is None
    assert pr.flags == {"value_nan"}


def test_plx_continuous_fast_slow_status_and_sensor_off():
    data = h("1F 60 00 50 00 61 00 51 00 5F 00 4F 00 00 80 00 80 00 23 F0")
    m = decode_plx_continuous(data)
    labels = [v.label for v in m.values]
    assert labels == ["SPO2", "PR", "SPO2_FAST", "PR_FAST", "SPO2_SLOW", "PR_SLOW", "PAI"]
    assert m.values[-1].value == 3.5
    assert "invalid_measurement" in m.flags
    assert "sensor_disconnected" in m.flags
    assert m.conditions == {"sensor_off"}


def test_plx_features_example():
    f = decode_plx_features(h("03 00 A0 00 20 00 00"))
    assert (f.supported, f.measurement_status_support, f.device_sensor_status_support) == (3, 0xA0, 0x20)
    assert not f.supported & 0x04  # no spot-check measurement storage


# -- temperature -----------------------------------------------------------------
def test_temperature_examples():
    assert vals(decode_temperature(h("00 01 02 03 04"))) == {("TEMP", 197121e4, "Cel")}
    assert vals(decode_temperature(h("01 01 02 03 04"))) == {("TEMP", 197121e4, "[degF]")}
    assert vals(decode_temperature(h("00 6E 01 00 FF"))) == {("TEMP", 36.6, "Cel")}
    m = decode_temperature(h("07 D2 03 00 FF E8 07 03 05 0E 1E 00 06"))
    assert vals(m) == {("TEMP", 97.8, "[degF]")}
    assert m.device_time == datetime(2024, 3, 5, 14, 30)
    assert m.flags == {"site_mouth"}


# -- blood pressure --------------------------------------------------------------
def test_blood_pressure_examples():
    assert vals(decode_blood_pressure(h("00 01 00 02 00 03 00"))) == {
        ("NIBP_SYS", 1.0, "mm[Hg]"),
        ("NIBP_DIA", 2.0, "mm[Hg]"),
        ("NIBP_MEAN", 3.0, "mm[Hg]"),
    }
    assert {u for _, _, u in vals(decode_blood_pressure(h("01 01 00 02 00 03 00")))} == {"kPa"}
    assert decode_blood_pressure(h("02 01 00 02 00 03 00 2E 06 00 00 00 00 00")).device_time is None
    m = decode_blood_pressure(h("1E 78 00 50 00 5D 00 E8 07 03 05 09 0F 00 48 00 01 04 00"))
    assert vals(m) == {
        ("NIBP_SYS", 120.0, "mm[Hg]"),
        ("NIBP_DIA", 80.0, "mm[Hg]"),
        ("NIBP_MEAN", 93.0, "mm[Hg]"),
        ("NIBP_PR", 72.0, "/min"),
    }
    assert m.device_time == datetime(2024, 3, 5, 9, 15)
    assert m.extra["user_id"] == 1
    assert m.flags == {"irregular_pulse"}


def test_blood_pressure_pulse_range_bits():
    m = decode_blood_pressure(h("10 78 00 50 00 5D 00 08 00"))
    assert m.flags == {"pulse_rate_above_range"}


# -- glucose and RACP ------------------------------------------------------------
def test_glucose_examples():
    m = decode_glucose(h("02 01 00 E8 07 03 05 07 1E 00 5F B0 11"))
    assert m.seq == 1
    assert m.device_time == datetime(2024, 3, 5, 7, 30)
    assert vals(m) == {("GLU_CAP_WB", 95.0, "mg/dL")}
    assert m.flags == {"site_finger"}
    m = decode_glucose(h("06 02 00 E8 07 03 05 07 1E 00 35 C0 11"))
    assert (m.seq, vals(m)) == (2, {("GLU_CAP_WB", 5.3, "mmol/L")})


def test_glucose_time_offset_and_annunciation():
    m = decode_glucose(h("0B 03 00 E8 07 03 05 07 1E 00 F6 FF 5F B0 11 61 00"))
    assert m.device_time == datetime(2024, 3, 5, 7, 20)  # offset -10 min
    assert {"battery_low", "over_range", "under_range"} <= m.flags
    assert m.conditions == {"low_battery"}


def test_glucose_context_examples():
    assert decode_glucose_context(h("02 01 00 01")).flags == {"meal_preprandial"}
    ctx = decode_glucose_context(h("01 02 00 01 14 D0"))
    assert ctx.seq == 2
    assert ctx.flags == {"carbohydrate_breakfast"}


def test_racp_requests_and_responses():
    assert racp_report_all() == h("01 01")  # JavaBLEUtil RecordAccessControlPointTest 00001
    assert racp_report_after(9) == h("01 03 01 0A 00")
    assert racp_report_count() == h("04 01")
    assert racp_abort() == h("03 00")
    ok = decode_racp(h("06 00 01 01"))
    assert (ok.op, ok.request, ok.code, ok.text) == (RacpOp.RESPONSE, 1, 1, "success")
    assert decode_racp(h("06 00 01 06")).text == "no records found"
    assert decode_racp(h("05 00 0A 00")).count == 10
    with pytest.raises(BleDecodeError):
        decode_racp(h("01 01"))


# -- weight and battery ----------------------------------------------------------
def test_weight_examples():
    assert vals(decode_weight(h("00 00 00"))) == {("WEIGHT", 0.0, "kg")}
    failed = decode_weight(h("00 FF FF"))
    assert failed.values[0].value is None
    assert failed.values[0].flags == {"measurement_unsuccessful"}
    assert vals(decode_weight(h("00 10 4E"))) == {("WEIGHT", 99.92, "kg")}
    assert vals(decode_weight(h("08 10 4E 1E 01 BC 06"))) == {
        ("WEIGHT", 99.92, "kg"),
        ("BMI", 28.6, "kg/m2"),
        ("HEIGHT", 172.4, "cm"),
    }


def test_battery_examples():
    assert decode_battery(h("64")).extra == {"battery_pct": 100}
    assert decode_battery(h("0F")).extra == {"battery_pct": 15}
    with pytest.raises(BleDecodeError):
        decode_battery(h("65"))


# -- fuzzing: any bytes give a measurement or a BleDecodeError, nothing else --------
@pytest.mark.parametrize("name", sorted(CHARACTERISTICS))
@settings(max_examples=300)
@given(data=st.binary(max_size=40))
def test_every_decoder_survives_any_bytes(name, data):
    stream = MeasurementStream("fuzz")
    events = stream.value(name, data)
    assert stream.stats.frames_ok + stream.stats.frames_bad == 1
    assert all(isinstance(e, Reading | TechnicalEvent) for e in events)


# -- the stream: conditions, context join, bad frames ----------------------------
def test_glucose_is_held_for_its_context_and_joined():
    stream = MeasurementStream("g")
    assert stream.value("glucose", h("12 01 00 E8 07 03 05 07 1E 00 5F B0 11")) == []
    events = stream.value("glucose-context", h("02 01 00 01"))
    (reading,) = events
    assert isinstance(reading, Reading)
    assert reading.flags == {"site_finger", "meal_preprandial"}


def test_glucose_without_context_is_not_lost():
    stream = MeasurementStream("g")
    stream.value("glucose", h("12 01 00 E8 07 03 05 07 1E 00 5F B0 11"))
    events = stream.value("glucose", h("02 02 00 E8 07 03 05 07 1F 00 5F B0 11"))
    assert [e.seq // 64 for e in events if isinstance(e, Reading)] == [1, 2]
    assert stream.flush() == []


def test_low_battery_is_edge_triggered():
    stream = MeasurementStream("b", low_battery_pct=20)
    assert [(e.kind, e.active) for e in stream.value("battery", h("0F")) if isinstance(e, TechnicalEvent)] == [
        ("low_battery", True)
    ]
    assert stream.value("battery", h("0E")) == []
    assert [(e.kind, e.active) for e in stream.value("battery", h("50")) if isinstance(e, TechnicalEvent)] == [
        ("low_battery", False)
    ]


def test_hex_line_codec_resyncs_after_a_bad_line_and_accepts_uuid_prefixes():
    codec = HexLineCodec("d", "glucose")
    text = b"# capture\n12 01 00 E8 07 03 05 07 1E 00 5F B0 11\nnot hex\n2A34: 02 01 00 01\n02 02 00 E8"
    events: list[DeviceEvent] = []
    for i in range(len(text)):  # byte at a time
        events += codec.feed(text[i : i + 1])
    events += codec.finish()
    readings = [e for e in events if isinstance(e, Reading)]
    assert [(r.label, r.value) for r in readings] == [("GLU_CAP_WB", 95.0)]
    assert "meal_preprandial" in readings[0].flags
    assert (codec.stats.frames_ok, codec.stats.frames_bad) == (2, 2)  # the truncated last line is bad too
