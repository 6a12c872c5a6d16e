"""Benchmarks as tests: ratios from the same run, never absolute times."""

import pytest
import uvloop

from tests.bench.bench_alarm_latency import measure as latency
from tests.bench.bench_rule_eval import measure as rule_eval

pytestmark = pytest.mark.integration


def test_rule_cost_does_not_grow_with_rules_for_other_metrics():
    r = rule_eval(n=5000)
    print(r)
    assert r["ratio"] < 2.0


def test_every_alarm_onset_reaches_the_output_under_load():
    r = uvloop.run(latency(40))
    print(r)
    assert r["samples"] == 40 and r["load_observations"] > 0
    # Loose guard against a pathological alarm path (e.g. waiting on a timer or the disk):
    # the p50 alarm latency stays within a small multiple of the bare pty floor.
    assert r["alarm_p50_ms"] < 100 * r["floor_p50_ms"]
