import random

from appliance.core.backoff import Backoff


def test_doubles_up_to_the_cap_with_bounded_jitter_and_resets():
    b = Backoff(0.5, 4.0, random.Random(1))
    delays = [b.next() for _ in range(6)]
    for got, base in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert base * 0.8 <= got <= base * 1.2
    b.reset()
    assert b.next() <= 0.6
