"""Alarm outputs behind one interface: GPIO buzzer/LEDs/nurse call, console, JSON lines.

`OutputChain` calls every output; one that fails is reported (an
`output_failure` technical event, which the engine turns into a high-priority
technical alarm) and skipped from then on, so the remaining outputs carry on.
"""

from rules.outputs.base import AlarmOutput, OutputError
from rules.outputs.chain import OutputChain, SelfTestResult
from rules.outputs.console import ConsoleOutput, JsonlAlarmOutput, MemoryOutput

__all__ = [
    "AlarmOutput",
    "ConsoleOutput",
    "JsonlAlarmOutput",
    "MemoryOutput",
    "OutputChain",
    "OutputError",
    "SelfTestResult",
]
