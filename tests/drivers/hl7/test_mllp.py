"""MLLP framing (sans-IO): the find-based decoder against a byte-at-a-time reference
model of the framing rules, for any stream and any chunking (issue #14 finding 1),
and its cost per byte against a plain copy measured in the same run."""

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.hl7.mllp import CR, FS, HEAD_BYTES, VT, MllpDecoder, Oversized
from tests.timing import best_of


class Reference:
    """The framing rules one byte at a time (the pre-#14 decoder, plus the bound's head)."""

    def __init__(self, max_bytes: int) -> None:
        self.max, self.keep = max_bytes, min(HEAD_BYTES, max_bytes)
        self.open = self.fs = self.over = self.garbage = False
        self.buf = bytearray()
        self.out: list[bytes | Oversized] = []
        self.bad = self.skipped = self.runs = 0

    def add(self, b: int) -> None:
        if not self.over:
            self.buf.append(b)
            if len(self.buf) > self.max:
                self.over = True
                del self.buf[self.keep :]

    def feed(self, data: bytes) -> None:
        for b in data:
            if not self.open:
                if b == VT:
                    self.open, self.fs, self.over, self.garbage = True, False, False, False
                    self.buf = bytearray()
                else:
                    self.skipped += 1
                    if b not in b" \t\r\n" and not self.garbage:
                        self.garbage, self.runs = True, self.runs + 1
                continue
            if self.fs:
                self.fs = False
                if b == CR:
                    self.open = False
                    reason = f"message longer than {self.max} bytes (bound)"
                    self.out.append(Oversized(bytes(self.buf), reason) if self.over else bytes(self.buf))
                    continue
                self.add(FS)
            if b == VT:
                self.bad += 1
                self.buf.clear()
                self.over = False
            elif b == FS:
                self.fs = True
            else:
                self.add(b)


streams = st.lists(
    st.sampled_from([b"\x0b", b"\x1c", b"\r", b"\n", b" ", b"A", b"MSH|", b"\x1c\r", b"\x0bMSH|x\x1c\r", b"z" * 20]),
    max_size=60,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(streams, st.integers(1, 40), st.sampled_from([8, 24, 1 << 18]))
def test_any_stream_any_chunking_matches_the_byte_at_a_time_rules(data, chunk, max_bytes):
    ref = Reference(max_bytes)
    ref.feed(data)
    dec = MllpDecoder(max_bytes)
    out = [b for i in range(0, len(data), chunk) for b in dec.feed(data[i : i + chunk])]
    assert out == ref.out
    assert dec.stats.blocks_bad == ref.bad
    assert (dec.stats.bytes_skipped, dec.stats.garbage_runs) == (ref.skipped, ref.runs)
    assert dec.in_block == ref.open


def test_a_large_block_costs_about_a_copy_not_a_per_byte_loop():
    data = b"\x0b" + b"A" * (1 << 20) + b"\x1c\r"
    copy = best_of(lambda: bytes(bytearray(data)))
    decode = best_of(functools.partial(MllpDecoder((1 << 20) + 10).feed, data))
    # A per-byte interpreter loop is ~1000x a copy; C-level scanning is a few copies.
    assert decode < 60 * copy + 0.002


def test_runs_of_frame_bytes_are_taken_at_once():
    dec = MllpDecoder()
    assert dec.feed(b"\x0b" * 65536) == [] and dec.stats.blocks_bad == 65535
    assert dec.feed(b"\x1c" * 1000 + b"\r") == [b"\x1c" * 999]
