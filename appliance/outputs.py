"""The alarm outputs a config asks for: GPIO lines, the co-processor, console, JSON lines.

Built once at start-up by the gateway (`Gateway._make_alarms`); what only some
configs use (libgpiod, the co-processor's serial line) is imported only then.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.config import AlarmsConfig
from appliance.core.model import TechnicalEvent
from rules.outputs import AlarmOutput, ConsoleOutput, JsonlAlarmOutput, MemoryOutput, OutputError

__all__ = ["build_outputs"]


def build_outputs(cfg: AlarmsConfig, report: Callable[[TechnicalEvent], None] | None = None) -> list[AlarmOutput]:
    outputs: list[AlarmOutput] = []
    if cfg.coproc.coproc_port:
        from rules.outputs.coproc import CoprocOutput

        outputs.append(CoprocOutput(cfg.coproc, report))
    if cfg.gpio_chip:
        from rules.outputs.gpio import GpiodLines, GpioLineMap, GpioOutput
        from rules.patterns import PatternConfig

        line_map = GpioLineMap(
            cfg.gpio_chip, cfg.gpio_buzzer, cfg.gpio_led_red, cfg.gpio_led_yellow, cfg.gpio_led_cyan,
            cfg.gpio_nurse_call,
        )  # fmt: skip
        try:
            patterns = PatternConfig(
                high_interval_s=cfg.high_burst_interval_s,
                medium_interval_s=cfg.medium_burst_interval_s,
                low_interval_s=cfg.low_burst_interval_s,
                high_flash_hz=cfg.high_flash_hz,
                medium_flash_hz=cfg.medium_flash_hz,
            )
            outputs.append(GpioOutput(GpiodLines(line_map), patterns))
        except OutputError as exc:
            # Keep a failing stand-in so the self-test reports it as an output failure.
            outputs.append(MemoryOutput("gpio", fail=True, detail=str(exc)))
    if cfg.console:
        outputs.append(ConsoleOutput())
    if cfg.events_path:
        outputs.append(JsonlAlarmOutput(cfg.events_path))
    return outputs
