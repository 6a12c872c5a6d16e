"""GE S/5: framing vectors, record header, displayed values, session timers, fuzzing."""

import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import FixedClock, MonotonicUTC
from appliance.core.model import Reading, TechnicalEvent
from appliance.normalize import DeviceContext, Normalizer
from drivers.codec import SessionCodec
from drivers.datex.codec import DatexCodec, DatexTiming, displayed_values_request
from drivers.datex.frame import DatexFrameDecoder, build_record, checksum, encode_frame, parse_record
from drivers.datex.phdb import decode_phdb
from hil.datex_sim import S5Sim, phdb_subrecord
from hil.scenarios import Vitals

WALL = datetime(2026, 5, 4, 10, 30, 0)
V = Vitals(97, 72, 3.5)


def record(vitals=V):
    return build_record(0, [(1, phdb_subrecord(vitals, WALL))], r_time=1, dri_level=10)


def test_request_record_is_49_bytes_with_the_fact_sheet_fields():
    req = displayed_values_request(10, 0x0E)
    assert len(req) == 49 and struct.unpack_from("<h", req)[0] == 0x31
    assert req[14:16] == b"\x00\x00"  # main type PHDB
    assert req[16:22] == bytes.fromhex("0000 00 0000 ff")  # sr_desc[0] = {0, type 0}; [1] = end of list
    assert req[40:] == bytes.fromhex("01 0a00 0e000000 0000")  # DISPL, every 10 s, EXT1-3 classes
    assert displayed_values_request(0)[40:43] == bytes.fromhex("01 0000")  # stop


def test_flag_and_escape_in_data_and_in_the_checksum_byte():
    # A record whose checksum is 0x7E: it must travel as 7D 5E.
    base = bytearray(build_record(0, [(1, bytes(10))]))
    base[-1] = (0x7E - checksum(bytes(base[:-1]))) & 0xFF
    assert checksum(bytes(base)) == 0x7E
    frame = encode_frame(bytes(base))
    assert frame.endswith(b"\x7d\x5e\x7e") and frame.count(0x7E) == 2
    data = bytes(build_record(0, [(1, b"\x7e\x7d\x00")]))
    framed = encode_frame(data)
    assert b"\x7d\x5e\x7d\x5d\x00" in framed
    decoder = DatexFrameDecoder()
    assert decoder.feed(frame + framed) == [bytes(base), data]


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda f: f[:20] + bytes([f[20] ^ 1]) + f[21:], "checksum mismatch"),
        (lambda f: f[:1] + b"\x00" + f[2:], "checksum mismatch"),  # r_len changed: caught by the sum first
        (lambda f: b"\x7e" + f[1:30] + b"\x7e", "shorter than its header"),
    ],
)
def test_bad_frames_are_counted_and_the_next_frame_decodes(damage, why):
    good = encode_frame(record())
    decoder = DatexFrameDecoder()
    assert decoder.feed(damage(good) + good) == [record()]
    assert decoder.stats.frames_bad == 1 and why in decoder.last_error


def test_r_len_must_match_the_record():
    rec = bytearray(record())
    struct.pack_into("<h", rec, 0, len(rec) + 2)
    decoder = DatexFrameDecoder()
    assert decoder.feed(encode_frame(bytes(rec))) == []
    assert "r_len" in decoder.last_error


def test_header_and_subrecord_table():
    rec = parse_record(build_record(0, [(1, b"a" * 278), (4, b"b" * 114)], r_time=99, dri_level=10))
    assert (rec.main_type, rec.r_time, rec.dri_level) == (0, 99, 10)
    assert [(t, len(b)) for t, b in rec.subrecords] == [(1, 278), (4, 114)]
    bad = bytearray(build_record(0, [(1, b"x")]))
    struct.pack_into("<h", bad, 16, 500)  # offset beyond the data area
    with pytest.raises(ValueError, match="outside"):
        parse_record(bytes(bad))


def test_displayed_values_scaling_sites_and_special_values():
    sub = bytearray(phdb_subrecord(V, WALL))
    struct.pack_into("<h", sub, 128, -32763)  # SpO2 over range
    struct.pack_into("<h", sub, 96, -32766)  # T1 not updated
    struct.pack_into("<I", sub, 48, 0)  # P3 absent (status bit 0 clear)
    values = {v.label: v for v in decode_phdb(bytes(sub))}
    assert (values["ART_SYS"].value, values["ART_SYS"].unit) == (122.0, "mm[Hg]")
    assert values["CVP_MEAN"].value == 6.0 and values["NIBP_MEAN"].value == 90.0
    assert values["ST_II"].value == 1.2 and values["HR"].value == 72.0 and values["HR_ECG"].value == 72.0
    assert values["CO2_ET_P"].value == 39.5  # 5.2 % of 760 mmHg
    assert values["SPO2"].value is None and values["SPO2"].flags == {"over_range"}
    assert values["T_ESO"].value is None and {"not_updated", "missing"} <= values["T_ESO"].flags
    assert not any(label.startswith("P3") for label in values)


def test_normalized_quality_of_special_values():
    sub = bytearray(phdb_subrecord(V, WALL))
    struct.pack_into("<h", sub, 128, -32763)
    norm, ctx = Normalizer(max_clock_skew_s=None), DeviceContext("s5", "datex", "B1")
    got = {}
    for v in decode_phdb(bytes(sub)):
        obs, _ = norm.normalize(Reading("s5", v.label, v.value, v.unit, WALL, v.flags), ctx, WALL.replace(tzinfo=UTC))
        if obs:
            got[obs.metric] = obs
    assert got["MDC_PULS_OXIM_SAT_O2"].quality == "questionable"  # over range: real, beyond the scale
    assert got["MDC_PRESS_BLD_ART_SYS"].quality == "valid"
    assert got["MDC_AWAY_CO2_ET"].unit == "mm[Hg]"


class Bench:
    def __init__(self, timing=None):
        self.clock = FixedClock(datetime(2026, 5, 4, tzinfo=UTC))
        self.codec = DatexCodec("s5", self.clock, timing)
        self.sim = S5Sim(lambda t: V, lambda: WALL)
        self.events = []
        self.t = 0.0
        self.silent = False

    def run(self, seconds):
        for _ in range(round(seconds / 0.1)):
            out = self.codec.data_to_send()
            back = self.sim.feed(out, self.t) if not self.silent else b""
            self.events += self.codec.feed(back)
            self.clock.advance(0.1)
            self.t += 0.1
            self.events += self.codec.tick()

    def lost(self):
        return [e.active for e in self.events if isinstance(e, TechnicalEvent) and e.kind == "session_lost"]


def test_session_requests_then_receives_and_stops_on_shutdown():
    b = Bench()
    assert isinstance(b.codec, SessionCodec)
    b.events += b.codec.opened()
    b.run(11)
    assert b.sim.interval_s == 5 and b.sim.requests == 1
    readings = [e for e in b.events if isinstance(e, Reading)]
    assert len({r.seq for r in readings}) == 3  # t = 0, 5, 10
    assert readings[0].device_time == WALL
    b.codec.closing()
    b.sim.feed(b.codec.data_to_send(), b.t)
    assert b.sim.stops == 1 and b.sim.interval_s == 0


def test_silence_re_requests_once_reported_and_recovers():
    b = Bench(DatexTiming(interval_s=5, silence_timeout_s=12))
    b.events += b.codec.opened()
    b.run(6)
    b.sim.reboot()  # the monitor forgot the request
    b.run(11)
    assert b.lost() == [] and b.sim.requests == 1  # 12 s not yet over since the last record
    b.run(2)
    # Asked again; the monitor answers at once, which ends the loss.
    assert b.lost() == [True, False] and b.sim.requests == 2


def test_byte_at_a_time_equals_one_read():
    stream = encode_frame(record()) * 2
    one, two = DatexCodec("a", MonotonicUTC()), DatexCodec("a", MonotonicUTC())
    whole = one.feed(stream)
    split = [e for byte in stream for e in two.feed(bytes([byte]))]
    assert whole == split and len([e for e in whole if isinstance(e, Reading)]) == 2 * 31


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 300), max_size=6))
def test_fuzz_garbage_and_corruption_then_a_good_record(garbage, positions):
    good = encode_frame(record())
    noisy = bytearray(good)
    for p in positions:
        noisy[p % len(noisy)] ^= 0x55
    codec = DatexCodec("f", MonotonicUTC())
    codec.feed(garbage + bytes(noisy))
    after = [e for e in codec.feed(good) if isinstance(e, Reading)]
    assert len(after) == 31
