"""The checker the image test applies to the lines sampled in the VM (tests/image/gpio_sim.py)
accepts what the gateway's own pattern player drives, and rejects a pattern that is not
the configured one, a buzzer that keeps sounding through a pause and a nurse call that
stays on: fed here from `GpioOutput` on a fake clock, no VM. Times are relative to marks."""

from __future__ import annotations

from appliance.core.vocab import Priority
from rules.engine import Annunciation
from rules.outputs.gpio import GpioOutput, MemoryLines
from rules.patterns import PatternConfig
from tests.image.gpio_sim import Samples, check_samples

STEP_S = 0.002  # the guest sampler's poll


def _sampled(cfg: PatternConfig, *, pause_silences: bool = True) -> Samples:
    """What the guest would sample: settling 10 s, sounding 22 s, paused 4 s, acknowledged 4 s (gpio_guest.py)."""
    now = [1000.0]
    lines = MemoryLines(clock=lambda: now[0])
    out = GpioOutput(lines, cfg, clock=lambda: now[0])
    samples = Samples()

    def advance(seconds: float) -> None:
        end = now[0] + seconds
        while now[0] < end:
            now[0] += STEP_S
            out.apply(now[0])

    out.annunciate(Annunciation(Priority.HIGH, Priority.HIGH, 1))
    samples.marks["alarm-on"] = now[0]
    advance(10.0)  # the guest judges bursts only once the gateway has settled
    samples.marks["sounding"] = now[0]
    advance(22.0)
    samples.marks["pause"] = now[0]
    advance(1.0)  # the operator command's own start-up time in the guest
    out.annunciate(Annunciation(None if pause_silences else Priority.HIGH, Priority.HIGH, 1))
    samples.marks["paused"] = now[0]
    advance(4.0)
    samples.marks["ack"] = now[0]
    advance(1.0)
    out.annunciate(Annunciation(None, Priority.HIGH, 1))
    samples.marks["acked"] = now[0]
    advance(4.0)
    samples.marks["removed"] = now[0]
    for t, name, on in lines.changes:
        samples.changes.setdefault(name, []).append((t, on))
    return samples


def test_the_players_own_pattern_passes_and_its_figures_are_reported() -> None:
    problems, figures = check_samples(_sampled(PatternConfig()), PatternConfig())
    assert problems == []
    assert "pulse ms 15" in figures
    assert "red LED sounding 2.00 Hz duty 50 %" in figures


def test_a_burst_spaced_otherwise_than_configured_fails() -> None:
    # Not what the box was configured to play: the 3- and 2-pulse groups 500 ms apart, not 350.
    problems, _ = check_samples(_sampled(PatternConfig(high_group_gap_s=0.5)), PatternConfig())
    assert len(problems) == 1 and problems[0].startswith("too many pulse/gap times off by more than 40 ms")
    assert "gap 500/350 ms" in problems[0]


def test_a_buzzer_and_nurse_call_that_ignore_the_pause_fail() -> None:
    problems, _ = check_samples(_sampled(PatternConfig(), pause_silences=False), PatternConfig())
    assert "the buzzer sounded while paused" in problems
    assert "the nurse call stayed on after the audio pause" in problems


def test_missing_marks_are_named() -> None:
    samples = _sampled(PatternConfig())
    del samples.marks["acked"]
    assert check_samples(samples, PatternConfig())[0] == ["the guest never marked 'acked'"]
