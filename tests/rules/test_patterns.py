import itertools

import pytest

from appliance.core.vocab import Priority
from rules.patterns import PatternConfig, PatternError, burst, buzzer_on, led_on, next_change

CFG = PatternConfig()


def edges(priority, seconds, step=0.001):
    """Rising edges of the buzzer sampled on a fake clock."""
    out, prev = [], False
    for i in range(int(seconds / step)):
        t = i * step
        on = buzzer_on(priority, t, CFG)
        if on and not prev:
            out.append(round(t, 3))
        prev = on
    return out


def test_high_priority_is_ten_pulses_in_3_2_3_2_groups():
    pulses, period = burst(Priority.HIGH, CFG)
    assert len(pulses) == 10
    starts = [s for s, _ in pulses]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    short = CFG.pulse_s + CFG.high_spacing_s
    # Pulses inside a group are evenly spaced; the group and half gaps are longer.
    group = round(CFG.pulse_s + CFG.high_group_gap_s, 3)  # 3-group to 2-group
    half = round(CFG.pulse_s + CFG.high_half_gap_s, 3)  # first half to second half
    assert gaps == [short, short, group, short, half, short, short, group, short]
    # The standard's inter-burst interval is measured after the last pulse.
    assert period - (starts[-1] + CFG.pulse_s) == pytest.approx(CFG.high_interval_s)


def test_buzzer_timeline_on_a_fake_clock():
    period = burst(Priority.HIGH, CFG)[1]
    high = edges("high", period * 2)
    assert len(high) == 20  # two bursts of ten
    assert high[10] == pytest.approx(period, abs=0.002)
    assert len(edges(Priority.MEDIUM, burst(Priority.MEDIUM, CFG)[1])) == 3
    assert len(edges(Priority.LOW, burst(Priority.LOW, CFG)[1])) == 2
    assert edges(None, 5) == []


@pytest.mark.parametrize(("priority", "line", "hz"), [("high", "led_red", 2.0), ("medium", "led_yellow", 0.6)])
def test_leds_flash_at_the_configured_rate_with_duty(priority, line, hz):
    samples = [led_on(priority, i / 1000, CFG)[line] for i in range(10_000)]
    rises = sum(1 for a, b in itertools.pairwise(samples) if b and not a)
    assert rises == pytest.approx(10 * hz, abs=1)
    assert sum(samples) / len(samples) == pytest.approx(CFG.flash_duty, abs=0.02)
    others = {k for k, v in led_on(priority, 0.0, CFG).items() if v}
    assert others == {line}


def test_low_priority_led_is_steady_cyan():
    assert all(
        led_on(Priority.LOW, t / 10, CFG) == {"led_red": False, "led_yellow": False, "led_cyan": True}
        for t in range(50)
    )


def test_next_change_finds_the_next_edge():
    assert next_change(Priority.HIGH, 0.0, CFG) == pytest.approx(CFG.pulse_s, abs=0.006)
    assert next_change(None, 0.0, CFG) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"pulse_s": 0.05}, {"high_spacing_s": 0.2}, {"high_flash_hz": 3.0}, {"medium_interval_s": 1.0}, {"low_pulses": 3}],
)
def test_timings_outside_iec_ranges_are_refused(kwargs):
    with pytest.raises(PatternError, match="outside IEC 60601-1-8"):
        PatternConfig(**kwargs)
