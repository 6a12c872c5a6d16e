"""Rule evaluation throughput with 1,000 rules, against 10 rules, same run.

Run: .venv/bin/python -m tests.bench.bench_rule_eval
1,000 limit rules spread over 100 metrics (10 per metric) against a 10-rule set
on one metric. Observations hit a metric with 10 rules in both cases, so with
per-metric dispatch the two costs should be about equal (ratio near 1.0); a
linear scan would make the 1,000-rule case ~100x slower.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from appliance.core.model import Observation
from appliance.core.vocab import Quality
from rules.engine import Engine, EngineState
from rules.spec import parse_rules


def ruleset(metrics: int, per_metric: int) -> str:
    out = []
    for m in range(metrics):
        for r in range(per_metric):
            out.append(
                f'[[rule]]\nid = "m{m}-r{r}"\nkind = "limit"\nmetric = "M{m}"\nbelow = {50 + r}.0\n'
                f'clear = {52 + r}.0\nfor_s = 5.0\npriority = "medium"\n'
            )
    return "".join(out)


def observations(n: int, metrics: int) -> list[Observation]:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Observation(
            f"o{i}",
            f"M{i % metrics}",
            0,
            float(40 + (i * 7) % 30),
            "%",
            when,
            when,
            Quality.VALID,
            "d",
            f"B{i % 8}",
            None,
        )
        for i in range(n)
    ]


def per_obs_s(text: str, obs: list[Observation]) -> float:
    engine = Engine(parse_rules(text))
    state = EngineState()
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        now = 1_700_000_000.0
        for o in obs:
            now += 0.001
            state, _ = engine.evaluate(state, o, now)
        best = min(best, time.process_time() - t0)
    return best / len(obs)


def measure(n: int = 20_000) -> dict[str, float]:
    small = per_obs_s(ruleset(1, 10), observations(n, 1))
    # Same observations' metric (M0) in the big set, so only dispatch differs.
    big = per_obs_s(ruleset(100, 10), observations(n, 1))
    mixed = per_obs_s(ruleset(100, 10), observations(n, 100))
    return {"rules10_us": small * 1e6, "rules1000_us": big * 1e6, "mixed_us": mixed * 1e6, "ratio": big / small}


def main() -> None:
    r = measure()
    print(f"10 rules:    {r['rules10_us']:.1f} us CPU per observation ({1e6 / r['rules10_us']:.0f} obs/s)")
    print(f"1000 rules:  {r['rules1000_us']:.1f} us CPU per observation ({1e6 / r['rules1000_us']:.0f} obs/s)")
    print(f"1000 rules, observations over all 100 metrics: {r['mixed_us']:.1f} us per observation")
    print(f"ratio 1000 vs 10 rules: {r['ratio']:.2f}x (1.0 = cost independent of other metrics' rules)")


if __name__ == "__main__":
    main()
