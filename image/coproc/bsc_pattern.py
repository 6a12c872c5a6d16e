"""IEC 60601-1-8 signal patterns in integer milliseconds, for the co-processor's buzzer and LEDs.

The gateway's `rules/patterns.py` defaults, written again for the board (no floats
needed, no imports); tests/image/coproc/test_pure.py checks the two agree.
Priorities are the heartbeat's letters: 'H', 'M', 'L' ('-' = none).

The alarm-system-failure pattern is the high-priority burst with the red and
yellow LEDs flashing together at 2 Hz: as urgent as a high alarm (the bed is
unwatched) and unlike any one priority's visual signal.
"""

PULSE_MS = 150
HIGH_SPACING_MS = 100
HIGH_GROUP_GAP_MS = 350
HIGH_HALF_GAP_MS = 700
HIGH_INTERVAL_MS = 5000
MEDIUM_SPACING_MS = 200
MEDIUM_INTERVAL_MS = 8000
LOW_PULSES = 2
LOW_SPACING_MS = 200
LOW_INTERVAL_MS = 20000
HIGH_FLASH_PERIOD_MS = 500  # 2 Hz
MEDIUM_FLASH_PERIOD_MS = 1667  # 0.6 Hz
FLASH_DUTY_PERCENT = 50


def burst(priority: str) -> tuple[list[int], int]:
    """(start offsets of the pulses of one burst, repeat period), both in ms."""
    step = 0
    if priority == "H":
        starts = []
        t = 0
        step = PULSE_MS + HIGH_SPACING_MS
        for group, gap in ((3, HIGH_GROUP_GAP_MS), (2, HIGH_HALF_GAP_MS), (3, HIGH_GROUP_GAP_MS), (2, 0)):
            for _ in range(group):
                starts.append(t)
                t += step
            t += gap - HIGH_SPACING_MS
        return starts, starts[-1] + PULSE_MS + HIGH_INTERVAL_MS
    if priority == "M":
        step = PULSE_MS + MEDIUM_SPACING_MS
        return [0, step, 2 * step], 2 * step + PULSE_MS + MEDIUM_INTERVAL_MS
    if priority == "L":
        step = PULSE_MS + LOW_SPACING_MS
        return [i * step for i in range(LOW_PULSES)], (LOW_PULSES - 1) * step + PULSE_MS + LOW_INTERVAL_MS
    return [], 0


def buzzer_on(priority: str, since_ms: int) -> bool:
    starts, period = burst(priority)
    if period == 0 or since_ms < 0:
        return False
    phase = since_ms % period
    return any(start <= phase < start + PULSE_MS for start in starts)


def _flash(period_ms: int, since_ms: int) -> bool:
    return (since_ms % period_ms) * 100 < FLASH_DUTY_PERCENT * period_ms


def leds_on(priority: str, since_ms: int) -> tuple[bool, bool, bool]:
    """(red, yellow, cyan) for the visual priority; 'F' is the failure pattern."""
    if priority == "F":
        on = _flash(HIGH_FLASH_PERIOD_MS, since_ms)
        return on, on, False
    if priority == "H":
        return _flash(HIGH_FLASH_PERIOD_MS, since_ms), False, False
    if priority == "M":
        return False, _flash(MEDIUM_FLASH_PERIOD_MS, since_ms), False
    if priority == "L":
        return False, False, True  # steady
    return False, False, False
