"""The Nonin format sniffer: each format's stream is recognised as itself, at any
phase and chunking; noise confirms nothing; the work is linear in the input."""

import functools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.nonin.sniff import FormatSniffer, packet8_ok
from hil.nonin_sim import nonin_packet
from hil.scenarios import Vitals
from tests.timing import best_of


def stream(fmt: int, n: int) -> bytes:
    return b"".join(nonin_packet(fmt, Vitals(90 + i % 8, 60 + i % 30, 2.0), pleth_phase=i) for i in range(n))


@pytest.mark.parametrize("fmt", [2, 7, 8])
@settings(max_examples=30, deadline=None)
@given(skip=st.integers(0, 200), chunk=st.integers(1, 50))
def test_each_format_is_recognised_as_itself(fmt, skip, chunk):
    data = stream(fmt, 60 if fmt == 8 else 4)[skip:]
    sniffer = FormatSniffer()
    for i in range(0, len(data), chunk):
        sniffer.feed(data[i : i + chunk])
    assert sniffer.confirmed == fmt


def test_random_noise_confirms_nothing():
    sniffer = FormatSniffer()
    sniffer.feed(random.Random(14).randbytes(200_000))
    assert sniffer.confirmed is None


def test_packet8_structure():
    assert packet8_ok(0x81, 0x48, 0x61, 0x00)
    assert not packet8_ok(0x83, 0x7D, 0x7E, 0x00)  # HR 509, SpO2 126
    assert packet8_ok(0x83, 0x7F, 0x7F, 0x09)  # missing-data codes, sensor alarm, low battery


def test_work_is_linear():
    def run(n: int) -> None:
        s = FormatSniffer()
        data = stream(2, n)
        for i in range(0, len(data), 512):
            s.feed(data[i : i + 512])

    assert (
        best_of(functools.partial(run, 160), 3) < 10 * best_of(functools.partial(run, 40), 3) + 0.005
    )  # quadratic: 16x
