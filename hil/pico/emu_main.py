"""Bench device emulator firmware (RP2040, MicroPython): a Masimo or Nonin oximeter on a UART.

Copy as the Pico's main.py with emu_config.py, emu_devices.py and emu_scenarios.py.
The n-th message carries the scenario at n periods (times SPEED), so a capture is
the same bytes on every run; the sending is paced by the board's clock.
"""

import asyncio
import time

import emu_config as cfg
import machine
from emu_devices import masimo_line, nonin_packet
from emu_scenarios import SCENARIOS


def period_ms() -> int:
    if cfg.DEVICE == "masimo":
        return 1000  # one line a second
    return 333 if cfg.NONIN_FORMAT in (2, 7) else 1000  # 25 frames at 75 frames/s, or 1 packet/s


def message(n: int) -> bytes:
    t = n * period_ms() * cfg.SPEED / 1000
    vitals = SCENARIOS[cfg.SCENARIO](t)
    if cfg.DEVICE == "masimo":
        y, mo, d, h, mi, s = time.localtime()[:6]
        return masimo_line(cfg.MASIMO_VARIANT, (y, mo, d, h, mi, s), vitals)
    return nonin_packet(cfg.NONIN_FORMAT, vitals, pleth_phase=n)


async def run() -> None:
    uart = machine.UART(cfg.UART_ID, cfg.BAUD, tx=machine.Pin(cfg.UART_TX), rx=machine.Pin(cfg.UART_RX))
    print("emulating", cfg.DEVICE, cfg.SCENARIO, "x", cfg.SPEED)
    start = time.ticks_ms()
    n = 0
    while True:
        uart.write(message(n))
        n += 1
        wait = time.ticks_diff(time.ticks_add(start, n * period_ms()), time.ticks_ms())
        await asyncio.sleep_ms(max(0, wait))


asyncio.run(run())
