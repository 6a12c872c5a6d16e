"""Nonin format #13 (SmartPoint spot-check records): byte vectors, one byte at a time,
many per feed, corrupt records counted and skipped with resync, the device's own time
kept by the gateway, config, and fuzzing."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config import parse_config
from appliance.core.model import DeviceEvent, Reading, TechnicalEvent
from appliance.normalize import DeviceContext, Normalizer
from drivers.nonin.spot import HEADER, NoninSpotCodec
from hil.nonin_sim import nonin_spot_record
from hil.scenarios import Vitals

# Written out by hand from nonin.md §6 (not by the simulator): 2026-03-04 05:06:07,
# STATUS 0x0200 (SPA), HR 0x01 0x04 = 260, SpO2 97; checksum = sum of the 14 data bytes.
DATA = bytes([0x20, 0x26, 0x03, 0x04, 0x05, 0x06, 0x07, 0x00, 0x02, 0x00, 0x01, 0x04, 0x00, 97])
RECORD = b"\x00\x02\x00\x0d\x00\x0e" + DATA + bytes([sum(DATA) & 0xFF, 0x03])
WHEN = datetime(2026, 3, 4, 5, 6, 7)


def readings(events: list[DeviceEvent]) -> list[Reading]:
    return [e for e in events if isinstance(e, Reading)]


def bad(events: list[DeviceEvent]) -> list[TechnicalEvent]:
    return [e for e in events if isinstance(e, TechnicalEvent) and e.kind == "bad_frame"]


def test_the_fact_sheet_record_whole_byte_by_byte_and_many_per_feed():
    whole = readings(NoninSpotCodec("n").feed(RECORD))
    assert [(r.label, r.value, r.unit, r.device_time) for r in whole] == [
        ("HR", 260.0, "/min", WHEN),
        ("SPO2", 97.0, "%", WHEN),
    ]
    assert whole[0].flags == {"spot_check", "stored", "smartpoint"}
    one = NoninSpotCodec("n")
    assert readings([e for b in RECORD for e in one.feed(bytes([b]))]) == whole
    many = NoninSpotCodec("n")
    out = readings(many.feed(b"\x06" + RECORD * 3 + b"\x15"))  # ACK / NAK bytes are expected, not bad
    assert len(out) == 6 and many.stats.frames_ok == 3 and many.stats.frames_bad == 0
    assert len({r.seq for r in out}) == 6


@pytest.mark.parametrize(
    ("index", "byte", "why"),
    [
        (20, 0x00, "checksum"),
        (21, 0x04, "ETX"),
        (8, 0x1A, "BCD"),  # month 0x1A
        (9, 0x32, "date"),  # day 32: BCD, but no such date
        (5, 0x02, "length"),
    ],
)
def test_a_corrupt_record_is_counted_skipped_and_the_next_decodes(index, byte, why):
    broken = bytearray(RECORD)
    broken[index] = byte
    if why in ("BCD", "date"):
        broken[20] = sum(broken[6:20]) & 0xFF  # a consistent checksum: the content is what is wrong
    c = NoninSpotCodec("n")
    events = c.feed(bytes(broken)) + c.feed(RECORD)
    assert c.stats.frames_bad >= 1 and c.stats.frames_ok == 1
    assert [r.value for r in readings(events)] == [260.0, 97.0]
    assert all(e.count >= 1 for e in bad(events))


def test_missing_values_no_measurement_and_low_battery():
    c = NoninSpotCodec("n")
    off = readings(c.feed(nonin_spot_record(Vitals(96, 72, 2.0, sensor_off=True), WHEN, low_battery=True)))
    assert [r.value for r in off] == [None, None] and all("missing" in r.flags for r in off)
    weak = c.feed(nonin_spot_record(Vitals(96, 72, 2.0), WHEN, smartpoint=False, from_memory=True))
    assert [(e.kind, e.active) for e in weak if isinstance(e, TechnicalEvent)] == [("low_battery", False)]
    assert all({"not_smartpoint", "from_memory"} <= r.flags for r in readings(weak))


@pytest.mark.parametrize("age", [timedelta(days=2), timedelta(minutes=30), timedelta(0)])
def test_the_gateway_keeps_the_records_own_time_whatever_its_age(age):
    received = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    record = nonin_spot_record(Vitals(95, 70, 2.0), (received - age).replace(tzinfo=None), smartpoint=False)
    norm, ctx = Normalizer(max_clock_skew_s=300.0), DeviceContext("n", "nonin-13", "B1", tz=UTC, patient_id="p")
    for r in readings(NoninSpotCodec("n").feed(record)):
        obs, events = norm.normalize(r, ctx, received)
        assert obs is not None and obs.time == received - age and "clock_skew" not in obs.flags and not events
        assert obs.quality == "questionable"  # no SmartPoint mark


def test_config_accepts_format_13(tmp_path):
    text = f'[gateway]\nbed_id = "B"\nregistry_path = "{tmp_path / "r.json"}"\n'
    text += '[[devices]]\nid = "ox"\nprotocol = "nonin-13"\nport = "/dev/ttyUSB0"\n'
    assert parse_config(text).devices[0].protocol == "nonin-13"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(1, 7))
def test_fuzz_garbage_then_good_records(garbage, chunk):
    c = NoninSpotCodec("n")
    stream = garbage + RECORD + RECORD
    events = [e for i in range(0, len(stream), chunk) for e in c.feed(stream[i : i + chunk])]
    # Whatever came before, the two good records decode (a false start inside the
    # garbage costs at most bad frames, never the records after it).
    assert [r.value for r in readings(events)][-4:] == [260.0, 97.0, 260.0, 97.0]
    if HEADER not in garbage and not garbage.strip(b"\x06\x15"):
        assert c.stats.frames_bad == 0


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_records_never_raise_and_counts_add_up(data):
    records = [bytearray(RECORD) for _ in range(4)]
    for _ in range(data.draw(st.integers(1, 6))):
        rec = records[data.draw(st.integers(0, 3))]
        rec[data.draw(st.integers(0, len(rec) - 1))] = data.draw(st.integers(0, 255))
    c = NoninSpotCodec("n")
    events = c.feed(b"".join(records) + RECORD)
    values = readings(events)
    assert len(values) == 2 * c.stats.frames_ok and c.stats.frames_ok >= 1
    assert all(r.device_time is not None for r in values)


def test_a_corrupt_length_does_not_hold_back_the_next_good_record():
    # Found by the fuzz test in CI: a length byte turned 0x0e -> 0x3b claims 59 bytes; the
    # next good record sat inside them until more bytes came (hours, for a spot checker).
    bad = bytearray(RECORD)
    bad[5] = 0x3B
    c = NoninSpotCodec("n")
    values = readings(c.feed(bytes(bad) + RECORD))
    assert len(values) == 2 and c.stats.frames_ok == 1 and c.stats.frames_bad >= 1
