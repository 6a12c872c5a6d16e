"""Timing helper for tests that compare two costs measured in the same run."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["best_of"]


def best_of(fn: Callable[[], object], runs: int = 5) -> float:
    """The fastest of `runs` calls: the least disturbed by other work on the machine."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
