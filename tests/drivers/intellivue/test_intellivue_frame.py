from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.intellivue.frame import MAX_FRAME_BYTES, FrameDecoder, encode_frame, fcs16

CAPTURE = Path(__file__).resolve().parents[2] / "fixtures" / "intellivue" / "MPRawoutput1.raw"


def test_fcs_is_crc16_x25():
    assert fcs16(b"123456789") == 0x906E  # the standard CRC-16/X.25 check value


def test_real_capture_decodes_every_frame_and_holds_the_truncated_tail():
    data = CAPTURE.read_bytes()
    dec = FrameDecoder()
    frames = dec.feed(data)
    assert len(frames) == 2887 and dec.stats.frames_bad == 0
    assert frames[0][0] == 0x0E  # association response (AC_SPDU)
    assert frames[1][:4] == b"\xe1\x00\x00\x02"  # data-export SPpdu: MDS create event
    # The file ends inside a frame: held, not emitted, not counted bad ...
    assert dec._in_frame and dec.stats.frames_bad == 0
    # ... and a new frame after it is decoded (the cut one is then counted).
    assert dec.feed(encode_frame(b"next")) == [b"next"] and dec.stats.frames_bad == 1


def test_byte_at_a_time_equals_one_read_on_the_capture_head():
    data = CAPTURE.read_bytes()[:20_000]
    whole = FrameDecoder().feed(data)
    dec = FrameDecoder()
    pieces = [f for i in range(len(data)) for f in dec.feed(data[i : i + 1])]
    assert pieces == whole and len(whole) > 10


def test_escaping_covers_length_and_fcs_bytes():
    # 0xC0 user-data bytes make the length 0x00C0 and 0x7D bytes; both must be escaped.
    payload = bytes([0x7D] * 0xC0)
    frame = encode_frame(payload)
    inner = frame[1:-1]
    assert BOF_or_EOF_absent(inner)
    assert inner[:5] == b"\x11\x01\x00\x7d\xe0"  # the length's 0xC0 escaped as 7D E0
    assert FrameDecoder().feed(frame) == [payload]
    # Find a payload whose FCS contains a reserved byte and check it round-trips.
    for n in range(2000):
        p = n.to_bytes(2, "big")
        fcs = fcs16(b"\x11\x01\x00\x02" + p)
        if {fcs & 0xFF, fcs >> 8} & {0xC0, 0xC1, 0x7D}:
            assert BOF_or_EOF_absent(encode_frame(p)[1:-1])
            assert FrameDecoder().feed(encode_frame(p)) == [p]
            break
    else:
        pytest.fail("no FCS with a reserved byte found")


def BOF_or_EOF_absent(inner: bytes) -> bool:
    return 0xC0 not in inner and 0xC1 not in inner


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda f: f[:6] + bytes([f[6] ^ 0xFF]) + f[7:], "FCS mismatch"),
        (lambda f: f[:-1] + b"\x7d\xc1", "abort sequence"),
        (lambda f: f[:4] + b"\x08" + f[5:], "length field"),
        (lambda f: f[:10] + b"\xc0", "BOF inside a frame"),
    ],
)
def test_bad_frames_are_counted_and_the_next_frame_decodes(damage, why):
    good = encode_frame(b"\xe1\x00\x00\x02hello")
    dec = FrameDecoder()
    out = dec.feed(damage(good) + good)
    assert out[-1] == b"\xe1\x00\x00\x02hello"
    assert dec.stats.frames_bad == 1 and why in dec.last_error


def test_oversize_frame_is_dropped():
    dec = FrameDecoder()
    out = dec.feed(b"\xc0" + b"\x11" * (MAX_FRAME_BYTES + 10) + b"\xc1" + encode_frame(b"ok"))
    assert out == [b"ok"] and dec.stats.frames_bad == 1


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=300), payload=st.binary(max_size=200))
def test_fuzz_garbage_then_a_good_frame(garbage, payload):
    dec = FrameDecoder()
    # An EOF after the garbage closes any frame the garbage may have opened.
    out = dec.feed(garbage + b"\xc1" + encode_frame(payload))
    assert out and out[-1] == payload
