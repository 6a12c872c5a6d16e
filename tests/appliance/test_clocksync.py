"""The gateway clock's pure core: follows the synchronised system clock, reports steps
once, never runs backwards, and says whether stamps are on a synchronised clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.clock import GatewayClock, MemoryTimeSource
from appliance.core.clocksync import TRANSITIONS, ClockSample, ClockSettings, ClockSync, SyncInput, SyncState
from appliance.core.model import TechnicalEvent

WALL0 = datetime(2031, 7, 4, 9, 0, 0, tzinfo=UTC).timestamp()
BOOT = datetime(2030, 1, 1, tzinfo=UTC).timestamp()  # what fake-hwclock left: the last shutdown


def kinds(events: list[TechnicalEvent]) -> list[tuple[str, bool]]:
    return [(e.kind, e.active) for e in events]


def test_unsynchronised_it_free_runs_on_monotonic_time_and_ignores_the_wall_clock():
    core = ClockSync(ClockSample(100.0, BOOT, False))
    assert kinds(core.observe(ClockSample(100.0, BOOT, False))) == [("clock_unsynced", True)]
    assert not core.synced
    # Someone sets the wall clock by hand: not trusted while the kernel says unsynchronised.
    assert core.observe(ClockSample(110.0, BOOT + 5000.0, False)) == []
    assert core.at(120.0) == BOOT + 20.0


def test_sync_steps_forward_once_reports_it_and_ends_the_condition():
    core = ClockSync(ClockSample(100.0, BOOT, False))
    core.observe(ClockSample(100.0, BOOT, False))
    before = core.at(130.0)
    events = core.observe(ClockSample(130.0, WALL0, True))
    assert kinds(events) == [("clock_step", True), ("clock_unsynced", False)]
    assert f"{WALL0 - BOOT - 30.0:+.3f} s" in events[0].detail and events[0].count == 1
    assert core.synced and core.at(130.0) == WALL0 > before
    # Following a synchronised clock: NTP's small slews are no steps.
    assert core.observe(ClockSample(140.0, WALL0 + 10.0005, True)) == []
    assert core.at(150.0) == WALL0 + 20.0005
    assert core.steps == 1


def test_starting_synchronised_raises_nothing():
    core = ClockSync(ClockSample(5.0, WALL0, True))
    assert core.observe(ClockSample(5.0, WALL0, True)) == []
    assert core.synced and core.state is SyncState.SYNCED


def test_an_unknown_kernel_status_is_taken_as_synchronised():
    core = ClockSync(ClockSample(5.0, WALL0, None))
    assert core.observe(ClockSample(6.0, WALL0 + 1.0, None)) == [] and core.synced


def test_a_step_back_slews_at_half_speed_until_it_meets_the_wall_clock():
    core = ClockSync(ClockSample(0.0, WALL0, True), ClockSettings(step_s=1.0, slew=0.5))
    core.observe(ClockSample(0.0, WALL0, True))
    events = core.observe(ClockSample(10.0, WALL0 + 10.0 - 60.0, True))  # NTP steps back a minute
    assert kinds(events) == [("clock_step", True), ("clock_unsynced", True)]
    assert "ahead" in events[1].detail and core.state is SyncState.CATCHING_UP
    assert core.at(10.0) == WALL0 + 10.0  # held at the last stamp, not back
    assert core.at(20.0) == WALL0 + 15.0  # half speed
    assert core.observe(ClockSample(80.0, WALL0 + 20.0, True)) == []  # 10 s ahead still
    assert kinds(core.observe(ClockSample(130.0, WALL0 + 70.0, True))) == [("clock_unsynced", False)]
    assert core.at(140.0) == WALL0 + 80.0  # on the wall clock again, at full speed


def test_losing_sync_raises_the_condition_and_keeps_the_offset():
    core = ClockSync(ClockSample(0.0, WALL0, True))
    core.observe(ClockSample(0.0, WALL0, True))
    assert kinds(core.observe(ClockSample(10.0, WALL0 + 500.0, False))) == [("clock_unsynced", True)]
    assert core.at(20.0) == WALL0 + 20.0


def test_the_table_lists_every_judgement_from_every_state():
    assert len(TRANSITIONS) == len(SyncState) * len(SyncInput)
    assert SyncState.STARTING not in set(TRANSITIONS.values())


def test_gateway_clock_reports_its_first_judgement_on_the_first_poll():
    source = MemoryTimeSource(datetime(2030, 1, 1, tzinfo=UTC))
    clock = GatewayClock(source)
    assert not clock.synced
    assert kinds(clock.poll()) == [("clock_unsynced", True)]
    assert clock.poll() == []
    source.advance(2.0)
    source.step(3600.0)
    source.sync = True
    assert kinds(clock.poll()) == [("clock_step", True), ("clock_unsynced", False)]
    assert clock.synced and clock.now() == datetime(2030, 1, 1, 1, 0, 2, tzinfo=UTC)
    assert clock.monotonic() == source.mono


# One move of the machine's clocks: (real seconds passed, wall step, kernel synchronised).
moves = st.lists(
    st.tuples(
        st.floats(0.0, 120.0),
        st.one_of(st.just(0.0), st.floats(-7200.0, 7200.0), st.floats(-0.5, 0.5)),
        st.sampled_from([True, False, None]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(moves, st.floats(0.1, 0.9))
def test_stamps_never_decrease_and_follow_the_synchronised_clock(steps, slew):
    cfg = ClockSettings(step_s=1.0, slew=slew)
    mono, wall = 50.0, BOOT
    core = ClockSync(ClockSample(mono, wall, False), cfg)
    last = core.at(mono)
    for passed, step, synced in steps:
        mono += passed
        wall += passed + step
        events = core.observe(ClockSample(mono, wall, synced))
        assert core.at(mono) >= last
        assert sum(e.kind == "clock_step" for e in events) <= 1
        last = core.at(mono)
        if core.synced:  # synchronised means on the wall clock, within the step bound
            assert abs(core.at(mono) - wall) <= cfg.step_s + 1e-6
        # The same sample again: no second report of the same step.
        assert [e for e in core.observe(ClockSample(mono, wall, synced)) if e.kind == "clock_step"] == []
        assert core.at(mono) >= last
        last = core.at(mono)


@settings(max_examples=200, deadline=None)
@given(st.floats(-86_400.0, 86_400.0).filter(lambda s: abs(s) > 1.0), st.floats(0.0, 30.0))
def test_one_step_over_the_bound_yields_exactly_one_event(step, later):
    core = ClockSync(ClockSample(0.0, WALL0, True))
    core.observe(ClockSample(0.0, WALL0, True))
    first = core.observe(ClockSample(10.0, WALL0 + 10.0 + step, True))
    after = core.observe(ClockSample(10.0 + later, WALL0 + 10.0 + step + later, True))
    assert [e.kind for e in first + after].count("clock_step") == 1
    if step > 0:  # forward: on the wall clock at once
        assert core.at(10.0 + later) == pytest.approx(WALL0 + 10.0 + step + later, abs=1e-5)
