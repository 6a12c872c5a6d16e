import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.core.model import AlarmEvent
from appliance.core.vocab import AlarmEventState, Priority
from rules.engine import Annunciation
from rules.outputs import ConsoleOutput, JsonlAlarmOutput, MemoryOutput, OutputChain, OutputError
from rules.outputs.gpio import GpiodLines, GpioLineMap, GpioOutput, MemoryLines
from rules.patterns import PatternConfig, burst

EVENT = AlarmEvent(
    "a1", "spo2-low", "B1", Priority.HIGH, "physiological", AlarmEventState.ACTIVE, datetime(2026, 1, 1, tzinfo=UTC)
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_gpio_output_plays_only_the_highest_priority_on_a_fake_clock():
    clock = FakeClock()
    lines = MemoryLines(clock)
    out = GpioOutput(lines, clock=clock)
    out.annunciate(Annunciation(Priority.HIGH, Priority.HIGH, 2))
    states = out.line_states(clock.t)
    assert states["buzzer"] and states["led_red"] and states["nurse_call"]
    assert not states["led_yellow"] and not states["led_cyan"]
    # Walk one high burst period in 1 ms steps: ten buzzer pulses.
    period = burst(Priority.HIGH, PatternConfig())[1]
    for _ in range(int(period * 1000) - 5):
        clock.t += 0.001
        out.apply(clock.t)
    rises = [c for c in lines.changes if c[1] == "buzzer" and c[2]]
    assert len(rises) == 10
    out.annunciate(Annunciation(Priority.MEDIUM, Priority.MEDIUM, 1))  # the high alarm ended
    assert not lines.state["nurse_call"] and lines.state["led_yellow"] and not lines.state["led_red"]
    out.annunciate(Annunciation(None, None, 0))
    assert not any(lines.state.values())


async def test_gpio_player_task_drives_lines_in_real_time():
    lines = MemoryLines()
    out = GpioOutput(lines)
    task = asyncio.create_task(out.run())
    out.annunciate(Annunciation(Priority.HIGH, Priority.HIGH, 1))
    await asyncio.sleep(0.8)
    task.cancel()
    rises = [c for c in lines.changes if c[1] == "buzzer" and c[2]]
    assert 2 <= len(rises) <= 4  # pulses at 0, 0.25, 0.5 (and 1.0 s)


def test_gpio_self_test_blips_every_line():
    lines = MemoryLines()
    GpioOutput(lines).self_test()
    assert {name for _, name, on in lines.changes if on} == {
        "buzzer",
        "led_red",
        "led_yellow",
        "led_cyan",
        "nurse_call",
    }
    assert not any(lines.state.values())


def test_gpiod_without_a_chip_is_a_clear_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot request alarm lines"):
        GpiodLines(GpioLineMap(chip=str(tmp_path / "gpiochip9")))


def test_chain_fails_over_and_reports_once():
    reports: list[Any] = []
    bad, good = MemoryOutput("gpio"), MemoryOutput("console")
    chain = OutputChain([bad, good], reports.append)
    chain.annunciate(Annunciation(Priority.HIGH, Priority.HIGH, 1))
    bad.fail = True
    chain.event(EVENT)
    chain.event(EVENT)
    assert [r.kind for r in reports] == ["output_failure"]
    assert "gpio" in reports[0].detail
    assert len(good.events) == 2 and chain.failed.keys() == {"gpio"}


def test_self_test_reports_each_output():
    reports: list[Any] = []
    chain = OutputChain([MemoryOutput("a"), MemoryOutput("b", fail=True, detail="no chip")], reports.append)
    results = chain.self_test()
    assert [(r.name, r.ok) for r in results] == [("a", True), ("b", False)]
    assert results[1].detail == "b: no chip" and reports[0].kind == "output_failure"


async def test_jsonl_output_writes_off_the_alarm_path(tmp_path):
    out = JsonlAlarmOutput(tmp_path / "alarms.jsonl")
    out.self_test()
    out.event(EVENT)
    out.annunciate(Annunciation(Priority.HIGH, Priority.HIGH, 1))
    assert (tmp_path / "alarms.jsonl").read_text() == ""  # nothing written in the caller's turn
    await out.flush()
    lines = [json.loads(x) for x in (tmp_path / "alarms.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["alarm", "annunciation"]


def test_jsonl_output_self_test_fails_on_unwritable_path(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError):
        JsonlAlarmOutput(tmp_path / "file" / "alarms.jsonl").self_test()


def test_console_output_logs(caplog):
    caplog.set_level("INFO", logger="bedside.alarm")
    ConsoleOutput().event(EVENT)
    assert "B1 high active [spo2-low]" in caplog.text
    # The event's own time (the gateway clock) is on the line, not only the log's.
    assert f" at {EVENT.time.isoformat(timespec='seconds')}" in caplog.text
