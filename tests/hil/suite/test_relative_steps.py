"""Steps timed from another step's mark (`from_step`): they wait for it, and when
everything else is over and the mark still has not come, the run fails in one line
naming it instead of waiting for ever (an OTA that never brought the box back up)."""

import asyncio
import time
from types import SimpleNamespace

import pytest

from hil.suite import runner
from hil.suite.spec import Device, Scenario, Step
from hil.suite.target import TargetError

SCENARIO = Scenario(
    "s", 1.0, (Device("d", "masimo", "B"),),
    (Step(0.0, "ota", name="ota"), Step(0.2, "silence", name="late", device="d", from_step="ota/up")),
    (),
)  # fmt: skip


def _play(played: list[tuple[str, float]]) -> SimpleNamespace:
    play = SimpleNamespace(scenario=SCENARIO, marked={})

    async def when(name: str) -> float:
        while name not in play.marked:
            await asyncio.sleep(0.01)
        return float(play.marked[name])

    async def step(s: Step, name: str) -> None:
        played.append((name, time.time()))

    play.when, play.play = when, step
    return play


async def test_a_relative_step_plays_at_its_offset_from_the_mark() -> None:
    played: list[tuple[str, float]] = []
    play = _play(played)
    task = asyncio.create_task(runner._relative(play, SCENARIO.steps[1], "late"))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert not played  # no mark yet
    mark = time.time()
    play.marked["ota/up"] = mark
    await task
    assert played[0][0] == "late" and played[0][1] >= mark + 0.2


async def test_a_mark_that_never_comes_fails_the_run_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "MARK_GRACE_S", 0.1)
    play = _play([])
    task = asyncio.create_task(runner._relative(play, SCENARIO.steps[1], "late"))  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="steps timed from ota/up never played"):
        await runner._last_marks(play, [task])  # type: ignore[arg-type]
    task.cancel()


async def test_steps_whose_mark_came_play_at_their_offset_however_long_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "MARK_GRACE_S", 0.05)
    played: list[tuple[str, float]] = []
    play = _play(played)
    play.marked["ota/up"] = time.time()
    late = Step(0.3, "silence", name="late", device="d", from_step="ota/up")  # 0.3 s > the grace
    task = asyncio.create_task(runner._relative(play, late, "late"))  # type: ignore[arg-type]
    await runner._last_marks(play, [task])  # type: ignore[arg-type]
    assert [name for name, _ in played] == ["late"]


async def test_the_run_waits_for_the_first_frame_of_a_step_played_last() -> None:
    play = SimpleNamespace(played=["calm"], marked={})

    async def frame() -> None:
        await asyncio.sleep(0.3)
        play.marked["calm"] = time.time()

    writer = asyncio.create_task(frame())
    await runner._triggers_written(play)  # type: ignore[arg-type]
    assert "calm" in play.marked  # the devices were not stopped before the step's frame
    await writer


def _late_mark(within_ms: float) -> tuple[SimpleNamespace, float]:
    """A play whose power cut's end was marked just now, past the scenario's 1 s, with an
    alarm expected within `within_ms` of it; and the mark's time."""
    from hil.suite.check import Event
    from hil.suite.spec import Expect

    expect = Expect("alarm", after="cut/end", rule="spo2-desat", where="broker", within_ms=within_ms)
    scenario = Scenario("s", 1.0, (), (Step(0.0, "power_cut", name="cut"),), (expect,))
    now = time.time()
    mark = Event(now, "bench", "step", {"name": "cut/end", "action": "power_cut", "trigger_t": now})
    return SimpleNamespace(scenario=scenario, events=[mark], consumer=SimpleNamespace(events=[])), now


async def test_the_run_goes_on_while_a_window_on_a_late_mark_is_open_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hil.suite.check import Event

    monkeypatch.setattr(runner, "WINDOW_POLL_S", 0.02)
    play, now = _late_mark(3000)

    async def alarm_at_the_broker() -> None:
        await asyncio.sleep(0.4)
        play.consumer.events.append(Event(time.time(), "broker", "alarm", {"rule_id": "spo2-desat", "state": "active"}))

    sender = asyncio.create_task(alarm_at_the_broker())
    await runner._windows_closed(play, SimpleNamespace(start_t=now - 1))  # type: ignore[arg-type]
    waited = time.time() - now
    assert sender.done() and play.consumer.events  # it waited for the alarm ...
    assert 0.35 < waited < 2.0  # ... and no longer: settled, not the whole 3 s window
    assert play.events[-1].kind == "extended" and play.events[-1].data["by_s"] >= 0.3


async def test_windows_on_a_late_mark_hold_the_run_no_longer_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "WINDOW_POLL_S", 0.02)
    monkeypatch.setattr(runner, "WINDOW_MAX_S", 0.3)
    play, now = _late_mark(3_600_000)
    await runner._windows_closed(play, SimpleNamespace(start_t=now - 1))  # type: ignore[arg-type]
    assert 0.25 < time.time() - now < 1.0  # an hour's window, an alarm that never came: capped
    assert play.events[-1].kind == "extended"
