"""Only live streams are judged by skew; sources that may legitimately send old data
keep their time, flagged late; readings stamped on an unsynchronised clock say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from appliance.core.clock import FixedClock
from appliance.core.model import Reading
from appliance.normalize import DeviceContext, Normalizer
from drivers.ble.family import EPISODIC_PROFILES
from drivers.ble.profiles import PROFILES
from drivers.family import DeviceTime
from drivers.hl7.mllp import frame
from drivers.registry import device_time, make_codec

RECEIVED = datetime(2031, 7, 4, 9, 30, tzinfo=UTC)
SPO2 = "150456^MDC_PULS_OXIM_SAT_O2"


def hl7_obx(obx14: bytes) -> Reading:
    msg = (
        b"MSH|^~\\&|S|F|||20310704093000||ORU^R01^ORU_R01|C1|P|2.6|||AL|NE\rOBR|1|||x\r"
        b"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||F|||" + obx14 + b"\r"
    )
    (reading,) = make_codec("hl7", "h", FixedClock(RECEIVED)).feed(frame(msg))
    assert isinstance(reading, Reading)
    return reading


def test_an_hl7_time_with_an_explicit_offset_is_kept_and_flagged_late():
    norm = Normalizer(max_clock_skew_s=300)
    reading = hl7_obx(b"20310704070000+0200")  # 05:00 UTC: four and a half hours old, resent
    assert reading.device_time is not None and reading.device_time.tzinfo is not None
    obs, events = norm.normalize(reading, DeviceContext("h", "hl7", "B"), RECEIVED)
    assert obs is not None and events == []
    assert obs.time == datetime(2031, 7, 4, 5, 0, tzinfo=UTC) and "late" in obs.flags
    assert "clock_skew" not in obs.flags and obs.quality == "valid"  # old news, not a worse value
    assert norm.skew_s("h") is None  # says nothing about the sender's clock


def test_an_hl7_time_without_an_offset_is_judged_as_a_live_clock():
    norm = Normalizer(max_clock_skew_s=300)
    obs, events = norm.normalize(hl7_obx(b"20310704050000"), DeviceContext("h", "hl7", "B"), RECEIVED)
    assert obs is not None and obs.time == RECEIVED and "clock_skew" in obs.flags
    assert [(e.kind, e.active) for e in events] == [("clock_skew", True)]


def test_a_kept_time_in_the_future_is_distrusted():
    norm = Normalizer(max_clock_skew_s=300)
    ahead = RECEIVED.astimezone(timezone(timedelta(hours=2))) + timedelta(hours=1)
    reading = Reading("h", SPO2, 97.0, "%", ahead, seq=1)
    obs, _ = norm.normalize(reading, DeviceContext("h", "hl7", "B"), RECEIVED)
    assert obs is not None and obs.time == RECEIVED and "clock_skew" in obs.flags and "late" not in obs.flags


def test_a_kept_time_within_the_bound_is_neither_late_nor_skewed():
    norm = Normalizer(max_clock_skew_s=300)
    reading = Reading("c", "NIBP_SYS", 120.0, "mmHg", datetime(2031, 7, 4, 9, 27), seq=1)
    obs, _ = norm.normalize(reading, DeviceContext("c", "ble-blood-pressure", "B"), RECEIVED)
    assert obs is not None and obs.time == datetime(2031, 7, 4, 9, 27, tzinfo=UTC)
    assert not obs.flags & {"late", "clock_skew"}


def test_the_families_say_which_protocols_are_episodic():
    continuous = {name for name, profile in PROFILES.items() if not profile.continuous}
    assert continuous == EPISODIC_PROFILES
    assert device_time("ble-glucose") is DeviceTime.EPISODIC
    assert device_time("ble-heart-rate") is DeviceTime.LIVE
    assert device_time("hl7") is DeviceTime.STATED
    assert device_time("masimo") is DeviceTime.LIVE
    assert device_time("no-such-protocol") is DeviceTime.LIVE


def test_a_reading_stamped_on_an_unsynchronised_clock_is_flagged_and_keeps_its_quality():
    norm = Normalizer(max_clock_skew_s=300)
    reading = Reading("h", SPO2, 97.0, "%", seq=1)
    obs, _ = norm.normalize(reading, DeviceContext("h", "hl7", "B"), RECEIVED, clock_unsynced=True)
    assert obs is not None and "clock_unsynced" in obs.flags and obs.quality == "valid"
    obs, _ = norm.normalize(reading, DeviceContext("h", "hl7", "B"), RECEIVED)
    assert obs is not None and "clock_unsynced" not in obs.flags
