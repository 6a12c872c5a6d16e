"""IEC 60601-1-8 alarm signal patterns as pure functions of time.

Auditory (IEC 60601-1-8 Table 3/4 burst characteristics):
- high: a 10-pulse burst, 3 + 2 pulses, pause, 3 + 2 pulses; pulse spacing
  50-125 ms; burst repeated every 2.5-15 s;
- medium: a 3-pulse burst; pulse spacing 125-250 ms; repeated every 2.5-30 s;
- low: 1 or 2 pulses; repeated at an interval above 15 s (or not at all).
Pulse duration 75-200 ms for every priority.
Visual (Table 2): high flashing red 1.4-2.8 Hz, medium flashing yellow
0.4-0.8 Hz, both with a 20-60 % duty cycle; low steady cyan (or yellow).

`PatternConfig` keeps every timing inside those ranges (checked on creation);
the player in `rules.outputs.gpio` only asks these functions what the lines
should be at a given instant, so timing is testable with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from appliance.core.errors import BedsideRulesError
from appliance.core.vocab import Priority

__all__ = ["PatternConfig", "PatternError", "burst", "buzzer_on", "led_on", "next_change"]

LED_LINE: Final[dict[str, str]] = {Priority.HIGH: "led_red", Priority.MEDIUM: "led_yellow", Priority.LOW: "led_cyan"}


class PatternError(BedsideRulesError, ValueError):
    """A pattern timing outside the ranges IEC 60601-1-8 allows."""


@dataclass(frozen=True, slots=True)
class PatternConfig:
    pulse_s: float = 0.150
    high_spacing_s: float = 0.100  # gap between pulses inside a group
    high_group_gap_s: float = 0.350  # gap between the 3- and 2-pulse groups
    high_half_gap_s: float = 0.700  # gap between the two halves of the 10-pulse burst
    high_interval_s: float = 5.0
    medium_spacing_s: float = 0.200
    medium_interval_s: float = 8.0
    low_pulses: int = 2
    low_spacing_s: float = 0.200
    low_interval_s: float = 20.0
    high_flash_hz: float = 2.0
    medium_flash_hz: float = 0.6
    flash_duty: float = 0.5

    def __post_init__(self) -> None:
        checks = [
            ("pulse_s", self.pulse_s, 0.075, 0.200),
            ("high_spacing_s", self.high_spacing_s, 0.050, 0.125),
            ("high_interval_s", self.high_interval_s, 2.5, 15.0),
            ("medium_spacing_s", self.medium_spacing_s, 0.125, 0.250),
            ("medium_interval_s", self.medium_interval_s, 2.5, 30.0),
            ("low_interval_s", self.low_interval_s, 15.0, 3600.0),
            ("high_flash_hz", self.high_flash_hz, 1.4, 2.8),
            ("medium_flash_hz", self.medium_flash_hz, 0.4, 0.8),
            ("flash_duty", self.flash_duty, 0.2, 0.6),
            ("low_pulses", self.low_pulses, 1, 2),
        ]
        for name, value, lo, hi in checks:
            if not lo <= value <= hi:
                raise PatternError(f"{name}: {value} is outside IEC 60601-1-8's {lo}-{hi}")


def burst(priority: Priority, cfg: PatternConfig) -> tuple[list[tuple[float, float]], float]:
    """([(start offset, duration)] of the pulses of one burst, repeat period).

    The configured interval is the standard's inter-burst interval: from the end
    of one burst to the start of the next, so the period is burst + interval.
    """
    p = cfg.pulse_s
    if priority == Priority.HIGH:
        step, starts, t = p + cfg.high_spacing_s, [], 0.0
        for group, gap in ((3, cfg.high_group_gap_s), (2, cfg.high_half_gap_s), (3, cfg.high_group_gap_s), (2, 0.0)):
            for _ in range(group):
                starts.append(t)
                t += step
            t += gap - cfg.high_spacing_s
        return [(s, p) for s in starts], starts[-1] + p + cfg.high_interval_s
    if priority == Priority.MEDIUM:
        step = p + cfg.medium_spacing_s
        return [(i * step, p) for i in range(3)], 2 * step + p + cfg.medium_interval_s
    step = p + cfg.low_spacing_s
    return [(i * step, p) for i in range(cfg.low_pulses)], (cfg.low_pulses - 1) * step + p + cfg.low_interval_s


def buzzer_on(priority: Priority | None, since_s: float, cfg: PatternConfig) -> bool:
    """Buzzer state `since_s` seconds after the pattern for `priority` started."""
    if priority is None or since_s < 0:
        return False
    pulses, interval = burst(priority, cfg)
    phase = since_s % interval
    return any(start <= phase < start + length for start, length in pulses)


def led_on(priority: Priority | None, since_s: float, cfg: PatternConfig) -> dict[str, bool]:
    """Every LED line's state; only the highest visual priority is shown."""
    lines = dict.fromkeys(LED_LINE.values(), False)
    if priority is None:
        return lines
    if priority == Priority.LOW:
        lines["led_cyan"] = True  # steady
        return lines
    hz = cfg.high_flash_hz if priority == Priority.HIGH else cfg.medium_flash_hz
    lines[LED_LINE[priority]] = (since_s * hz) % 1.0 < cfg.flash_duty
    return lines


def next_change(priority: Priority | None, since_s: float, cfg: PatternConfig, step_s: float = 0.005) -> float:
    """Seconds until any line changes (scanned at `step_s`, bounded by one second)."""
    if priority is None:
        return 1.0
    now = (buzzer_on(priority, since_s, cfg), led_on(priority, since_s, cfg))
    t = step_s
    while t < 1.0:
        if (buzzer_on(priority, since_s + t, cfg), led_on(priority, since_s + t, cfg)) != now:
            return t
        t += step_s
    return 1.0
