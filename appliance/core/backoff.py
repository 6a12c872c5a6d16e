"""Exponential backoff with jitter, shared by port reopen and task restart."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """min_s, 2*min_s, 4*min_s … capped at max_s, each spread by ±20 %.

    Jitter keeps 500 boxes that lost the same switch from retrying in lockstep.
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self._attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        base = min(self.max_s, self.min_s * (2 ** min(self._attempt, 30)))
        self._attempt += 1
        return float(base * self._rng.uniform(0.8, 1.2))

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt
