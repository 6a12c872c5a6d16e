"""Guards against pathological slow-downs, as ratios measured in the same run."""

from tests.bench.bench_decode import measure


def test_decode_cost_is_linear_and_within_a_small_multiple_of_the_baseline():
    r = measure(lines=600)
    print(r)
    # Quadratic buffering would show as a per-observation cost growing with input.
    assert r["masimo_scaling"] < 2.0
    # Generous: a codec doing per-byte Python work would be hundreds of times slower.
    assert r["masimo_ratio"] < 150
    assert r["nonin2_ratio"] < 300
