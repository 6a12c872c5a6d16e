"""hil/scenarios.py's vital-sign trajectories for the Pico emulators (MicroPython).

Pure functions of scenario seconds returning (spo2, pulse, pi, sensor_off,
low_perfusion); tests/hil/pico/test_emulators.py checks them against
hil.scenarios at many instants and through the gateway's codecs.
"""

import math

TYPE_CHECKING = False  # mypy takes any TYPE_CHECKING as true; MicroPython has no typing module
if TYPE_CHECKING:
    Vitals = tuple[float, float, float, bool, bool]


def _wobble(t: float, period_s: float, amplitude: float) -> float:
    return amplitude * math.sin(2 * math.pi * t / period_s)


def steady(t: float) -> "Vitals":
    return float(round(97 + _wobble(t, 40, 1))), float(round(72 + _wobble(t, 30, 3))), 3.5, False, False


def desaturation(t: float) -> "Vitals":
    phase = t % 150
    if phase < 30:
        spo2 = 97.0
    elif phase < 90:
        spo2 = 97 - 15 * (phase - 30) / 60
    elif phase < 120:
        spo2 = 82.0
    else:
        spo2 = 82 + 15 * (phase - 120) / 30
    return float(round(spo2)), float(round(78 + (97 - spo2))), 2.1, False, spo2 < 85


def tachycardia(t: float) -> "Vitals":
    phase = t % 180
    pulse = 80 + min(70.0, 70 * phase / 60)
    return float(round(96 + _wobble(t, 50, 1))), float(round(pulse)), 4.2, False, False


def sensor_off(t: float) -> "Vitals":
    spo2, pulse, pi, _, low = steady(t)
    return spo2, pulse, pi, (t % 40) >= 30, low


SCENARIOS = {"steady": steady, "desaturation": desaturation, "tachycardia": tachycardia, "sensor-off": sensor_off}
