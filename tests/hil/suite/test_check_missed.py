"""`no_missed_alarm` over an OTA window: every desaturation episode that begins during
the update raises its alarm — at once while the box is up, as soon as it is back when
the episode outlasts the reboot — and an episode wholly inside the reboot is named, not
judged. A missing alarm, a late one, or one borrowed from the next episode fails."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hil.suite.check import Event, check, describe
from hil.suite.check_missed import off_windows
from hil.suite.spec import Device, Expect, Scenario, Step

T0 = 1_000.0
PERIOD_S, DESAT_S = 15.0, 7.0
EXP = Expect(
    "no_missed_alarm", rule="spo2-desat", priority="high", bed="B", after="ota", until="ota/end", each="desat-",
    where="broker", within_ms=10_000, min_count=2,
)  # fmt: skip


def _scenario(episodes: int, *expects: Expect) -> Scenario:
    steps = [Step(2.0, "ota", name="ota", down_s=1)]
    for i in range(episodes):
        steps += [
            Step(5 + PERIOD_S * i, "vitals", name=f"desat-{i + 1}", device="d", spo2=75),
            Step(5 + PERIOD_S * i + DESAT_S, "vitals", name=f"normal-{i + 1}", device="d", spo2=97),
        ]
    return Scenario("s", 200.0, (Device("d", "masimo", "B"),), tuple(steps), expects or (EXP,))


def _step(name: str, t: float, action: str = "vitals") -> Event:
    return Event(t, "bench", "step", {"name": name, "action": action, "trigger_t": t})


def _alarm(t: float, **kw: Any) -> Event:
    data = {"rule_id": "spo2-desat", "state": "active", "bed_id": "B", "priority": "high", **kw}
    return Event(t, "broker", "alarm", data)


def _timeline(episodes: int, down: float, up: float, end: float) -> list[Event]:
    """The bench's steps as played: the OTA at 2 s, its reboot (down, up), its commit."""
    events = [_step("ota", T0 + 2, "ota"), _step("ota/down", T0 + down, "ota"), _step("ota/up", T0 + up, "ota")]
    events.append(_step("ota/end", T0 + end, "ota"))
    for i in range(episodes):
        events += [_step(f"desat-{i + 1}", T0 + 5 + PERIOD_S * i), _step(f"normal-{i + 1}", T0 + 12 + PERIOD_S * i)]
    return events


def test_every_episode_raised_at_once_passes_with_the_slowest_latency() -> None:
    events = _timeline(4, down=100, up=150, end=160) + [_alarm(T0 + 5.3 + PERIOD_S * i) for i in range(4)]
    (out,) = check(_scenario(4), events, T0)
    assert out.ok and "all 4 episodes" in out.detail and out.latency_ms is not None and 299 < out.latency_ms < 301
    assert "each episode desat-*" in describe(EXP) and "until step 'ota/end'" in describe(EXP)


def test_a_missing_or_late_alarm_fails_and_names_the_episode() -> None:
    events = [*_timeline(4, down=100, up=150, end=160), _alarm(T0 + 5.3), _alarm(T0 + 20.3), _alarm(T0 + 50.3)]
    (out,) = check(_scenario(4), events, T0)
    assert not out.ok and "1 of 4 episodes missed" in out.detail and "desat-3" in out.detail
    late = Expect(**{**{f: getattr(EXP, f) for f in EXP.__dataclass_fields__}, "within_ms": 200.0})
    (slow,) = check(_scenario(4, late), [*events, _alarm(T0 + 35.3)], T0)
    assert not slow.ok and "later than 200 ms" in slow.detail


def test_the_next_episodes_alarm_does_not_count_for_a_missed_one() -> None:
    # Episode 1 never alarmed; episode 2's alarm (15 s later) is inside a generous bound.
    wide = Expect(**{**{f: getattr(EXP, f) for f in EXP.__dataclass_fields__}, "within_ms": 60_000.0})
    events = [*_timeline(2, down=100, up=150, end=160), _alarm(T0 + 20.2)]
    (out,) = check(_scenario(2, wide), events, T0)
    assert not out.ok and "desat-1" in out.detail and "desat-2" not in out.detail.split("missed:")[1]


def test_an_episode_inside_the_reboot_is_named_and_one_that_outlasts_it_counts_from_the_box_back() -> None:
    # Reboot from 49 to 54: desat-4 (50-57) began while off and still holds at 54: judged from 54.
    events = _timeline(5, down=49, up=54, end=90)
    events += [_alarm(T0 + 5.2), _alarm(T0 + 20.2), _alarm(T0 + 35.2), _alarm(T0 + 65.2)]
    (out,) = check(_scenario(5), events, T0)
    assert not out.ok and "desat-4" in out.detail and "counted from the box back up" in out.detail
    (early,) = check(_scenario(5), [*events, _alarm(T0 + 53.0)], T0)  # before the box was back: impossible
    assert not early.ok
    (ok,) = check(_scenario(5), [*events, _alarm(T0 + 55.0)], T0)
    assert ok.ok and "all 5 episodes" in ok.detail
    # A reboot from 49 to 58 covers desat-4 (50-57) wholly: named, not judged, not failed.
    inside = _timeline(5, down=49, up=58, end=90)
    inside += [_alarm(T0 + 5.2), _alarm(T0 + 20.2), _alarm(T0 + 35.2), _alarm(T0 + 65.2)]
    (named,) = check(_scenario(5), inside, T0)
    assert named.ok and "all 4 episodes" in named.detail and "1 while the box was off (desat-4)" in named.detail


def test_too_few_episodes_judged_or_a_window_that_never_closed_fail() -> None:
    # The box off for nearly the whole update: one episode judged, two wanted.
    events = [*_timeline(3, down=4, up=36, end=40), _alarm(T0 + 36.5)]
    (few,) = check(_scenario(3), events, T0)
    assert not few.ok and "only 1 episodes with the box up, at least 2" in few.detail
    unfinished = [e for e in _timeline(3, down=100, up=150, end=160) if e.data["name"] != "ota/end"]
    (never,) = check(_scenario(3), unfinished, T0)
    assert not never.ok and "'ota/end' was never played" in never.detail


def test_power_cuts_count_as_the_box_off() -> None:
    events = [_step("cut", T0 + 10, "power_cut"), _step("cut/end", T0 + 20, "power_cut"), _step("ota/down", T0 + 30)]
    assert off_windows(events) == [(T0 + 10, T0 + 20)]


@settings(max_examples=200, deadline=None)
@given(
    episodes=st.integers(min_value=2, max_value=10),
    down=st.floats(min_value=3, max_value=150),
    length=st.floats(min_value=1, max_value=80),
    latency=st.floats(min_value=0.0, max_value=6.0),
    drop=st.integers(min_value=0, max_value=9),
)
def test_invariant_an_alarm_for_every_judged_episode_passes_and_dropping_one_fails(
    episodes: int, down: float, length: float, latency: float, drop: int
) -> None:
    up = down + length
    end = 5 + PERIOD_S * episodes + 1
    events = _timeline(episodes, down=down, up=up, end=end)
    judged = []
    for i in range(episodes):
        start, stop = 5 + PERIOD_S * i, 12 + PERIOD_S * i
        if down <= start < up:
            if up >= stop:
                continue  # wholly off: no gateway to raise it
            start = up
        judged.append(T0 + start + latency)
    exp = Expect(**{**{f: getattr(EXP, f) for f in EXP.__dataclass_fields__}, "min_count": 0.0})
    (out,) = check(_scenario(episodes, exp), events + [_alarm(t) for t in judged], T0)
    assert out.ok, out.detail
    if judged:
        kept = [t for i, t in enumerate(judged) if i != drop % len(judged)]
        (failed,) = check(_scenario(episodes, exp), events + [_alarm(t) for t in kept], T0)
        assert not failed.ok and "1 of" in failed.detail


def test_an_episode_with_less_left_than_the_condition_delay_after_the_reboot_is_not_judged() -> None:
    # spo2-low waits 10 s: desat-4 (50-57) with the box back at 52 has 5 s left: named.
    delayed = Expect(**{**{f: getattr(EXP, f) for f in EXP.__dataclass_fields__}, "not_before_ms": 5_500.0})
    events = _timeline(5, down=49, up=52, end=90)
    events += [_alarm(T0 + 5 + 15 * i + 6) for i in (0, 1, 2, 4)]
    (out,) = check(_scenario(5, delayed), events, T0)
    assert out.ok and "1 while the box was off (desat-4)" in out.detail
    # Back at 51 with 6 s left: judged, and its alarm is missing.
    (missed,) = check(_scenario(5, delayed), [e for e in events if e.data.get("name") != "ota/up"]
                      + [_step("ota/up", T0 + 51, "ota")], T0)  # fmt: skip
    assert not missed.ok and "desat-4" in missed.detail
