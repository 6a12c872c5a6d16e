"""Vital-sign trajectories for the device simulators, as pure functions of time.

Deterministic (no randomness) so a bench run is reproducible; the small
oscillations make the live view visibly move.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["SCENARIOS", "Vitals", "vitals_at"]


@dataclass(frozen=True, slots=True)
class Vitals:
    spo2: float
    pulse: float
    pi: float
    sensor_off: bool = False
    low_perfusion: bool = False


def _wobble(t: float, period_s: float, amplitude: float) -> float:
    return amplitude * math.sin(2 * math.pi * t / period_s)


def steady(t: float) -> Vitals:
    return Vitals(spo2=round(97 + _wobble(t, 40, 1)), pulse=round(72 + _wobble(t, 30, 3)), pi=3.5)


def desaturation(t: float) -> Vitals:
    """SpO2 falls from 97 % to 82 % over 60 s, holds 30 s, recovers over 30 s; repeats."""
    phase = t % 150
    if phase < 30:
        spo2 = 97.0
    elif phase < 90:
        spo2 = 97 - 15 * (phase - 30) / 60
    elif phase < 120:
        spo2 = 82.0
    else:
        spo2 = 82 + 15 * (phase - 120) / 30
    return Vitals(spo2=round(spo2), pulse=round(78 + (97 - spo2)), pi=2.1, low_perfusion=spo2 < 85)


def tachycardia(t: float) -> Vitals:
    """Pulse climbs from 80 to 150 /min over 60 s and stays; repeats every 180 s."""
    phase = t % 180
    pulse = 80 + min(70.0, 70 * phase / 60)
    return Vitals(spo2=round(96 + _wobble(t, 50, 1)), pulse=round(pulse), pi=4.2)


def sensor_off(t: float) -> Vitals:
    """Steady, with the probe off for 10 s in every 40 s."""
    base = steady(t)
    return Vitals(base.spo2, base.pulse, base.pi, sensor_off=(t % 40) >= 30)


SCENARIOS: Final[dict[str, Callable[[float], Vitals]]] = {
    "steady": steady,
    "desaturation": desaturation,
    "tachycardia": tachycardia,
    "sensor-off": sensor_off,
}


def vitals_at(scenario: str, t: float) -> Vitals:
    return SCENARIOS[scenario](t)
