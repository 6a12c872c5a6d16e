"""The clinical plane's cost stays small next to the alarm path's budget (a loop turn
well under 1 ms per reading): bounds ~10x above what bench_clinical measures here."""

from tests.bench.bench_clinical import measure


def test_the_clinical_plane_costs_microseconds_per_observation():
    m = measure(scale=0.05)
    assert m["skipped_us"] < 50, m  # most observations: inside the charting interval
    assert m["charted_us"] < 500, m
    assert m["record_us"] < 2000, m  # an operator action, signed in the caller's turn
