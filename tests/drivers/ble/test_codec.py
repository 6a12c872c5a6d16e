"""Issue #14 finding 8: the hex-line codec of `bedside decode --protocol ble-*` is
linear in its input (a 50 MB file without a newline never finished) and bounds a
line; chunking never changes what it decodes."""

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import DeviceEvent, TechnicalEvent
from drivers.ble.codec import MAX_LINE_BYTES, VALUES_PER_MEASUREMENT, HexLineCodec, measurement_seq, reading_seq
from tests.timing import best_of

GOOD = b"2A37: 06 48\n"  # heart rate 72 /min


def feed(data: bytes, chunk: int = 4096) -> tuple[HexLineCodec, list[DeviceEvent]]:
    codec = HexLineCodec("d", "heart-rate")
    events: list[DeviceEvent] = []
    for i in range(0, len(data), chunk):
        events += codec.feed(data[i : i + chunk])
    return codec, events + codec.finish()


def test_time_is_linear_in_input_size():
    for unit in (b"ab" * 512, GOOD * 20):  # one endless line; many good lines
        small = best_of(functools.partial(feed, unit * 256), 3)
        large = best_of(functools.partial(feed, unit * 1024), 3)
        assert large < 10 * small + 0.005  # quadratic would be 16x; 10x leaves room for a noisy machine


def test_an_overlong_line_is_one_bad_frame_and_the_next_line_decodes():
    codec, events = feed(b"0" * (3 * MAX_LINE_BYTES) + b"\n" + GOOD)
    bad = [e for e in events if isinstance(e, TechnicalEvent) and e.kind == "bad_frame"]
    assert len(bad) == 1 and "(bound)" in bad[0].detail
    assert (codec.stats.frames_ok, codec.stats.frames_bad) == (1, 1)
    assert len(codec._buf) == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([GOOD, b"zz\n", b"# c\n", b"\n", b"06 4", b"8\n"]), max_size=30), st.integers(1, 9))
def test_chunking_does_not_change_the_result(parts, chunk):
    data = b"".join(parts)
    assert feed(data, chunk)[1] == feed(data, len(data) + 1)[1]


def test_reading_ids_pack_the_measurement_and_the_value_index():
    # The vectors the uplink has always seen: record 1's first value is 64, record 7's third 450.
    assert [reading_seq(1, 0), reading_seq(1, 1), reading_seq(7, 2), reading_seq(0, 9)] == [64, 65, 450, 9]
    assert measurement_seq(450) == 7
    assert VALUES_PER_MEASUREMENT == 64


SLOT = st.integers(0, VALUES_PER_MEASUREMENT - 1)


@given(st.integers(0, 2**16 - 1), SLOT, SLOT)
def test_reading_ids_are_unique_and_give_back_their_measurement(measurement, i, j):
    assert measurement_seq(reading_seq(measurement, i)) == measurement
    assert reading_seq(measurement, i) < reading_seq(measurement + 1, j)  # ordered, never shared across records
    assert (reading_seq(measurement, i) == reading_seq(measurement, j)) == (i == j)
