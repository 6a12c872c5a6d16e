"""Alarm co-processor firmware (RP2040, MicroPython): hears the gateway's heartbeat on a
UART and sounds the alarm-system-failure pattern on its own buzzer and LEDs when it stops.

I/O only: decisions are in bsc_watch (state machine), bsc_proto (frames) and bsc_pattern
(IEC 60601-1-8 timing). Two tasks share one loop: the reader polls the UART and
answers frames; the player advances the timeout and drives the pins every PLAY_MS.
`REPL` (a valid frame after a VER in the same session, never while the failure pattern
sounds: bsc_watch.Watch.repl_refusal) hands the UART to the MicroPython REPL so the
gateway can write new files (raw REPL) and soft-reset; it does not survive a reset.
Before the hand-over a one-shot timer is armed that resets the board after
REPL_TIMEOUT_MS: a REPL nobody completes (the gateway crashed, the box rebooted, a
replayed frame) returns to this firmware. A soft reset (the end of a good update)
stops the timer.
"""

import asyncio
import os
import time

import bsc_config as cfg
import machine
from bsc_pattern import buzzer_on, leds_on
from bsc_proto import FW_VERSION, PROTOCOL, LineSplitter, decode, encode
from bsc_watch import Watch


class Board:
    """The pins; writes only on change."""

    def __init__(self) -> None:
        self.uart = machine.UART(cfg.UART_ID, cfg.BAUD, tx=machine.Pin(cfg.UART_TX), rx=machine.Pin(cfg.UART_RX))
        self.buzzer = machine.PWM(machine.Pin(cfg.BUZZER_PIN), freq=cfg.BUZZER_HZ, duty_u16=0)
        self.leds = [machine.Pin(p, machine.Pin.OUT, value=0) for p in (cfg.LED_RED, cfg.LED_YELLOW, cfg.LED_CYAN)]
        self.shown = (False, False, False, False)

    def show(self, buzz: bool, red: bool, yellow: bool, cyan: bool) -> None:
        want = (buzz, red, yellow, cyan)
        if want == self.shown:
            return
        self.shown = want
        self.buzzer.duty_u16(32768 if buzz else 0)
        for pin, on in zip(self.leds, (red, yellow, cyan)):
            pin.value(1 if on else 0)


class Clock:
    """Milliseconds since start as a plain int that never wraps (ticks_ms wraps after
    2**30 ms; ticks_diff of successive reads is always small)."""

    def __init__(self) -> None:
        self._last = time.ticks_ms()
        self._ms = 0

    def ms(self) -> int:
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._ms


class App:
    def __init__(self, board: Board) -> None:
        self.board = board
        self.clock = Clock()
        now = self.clock.ms()
        self.watch = Watch(now, cfg.TIMEOUT_MS, cfg.BOOT_GRACE_MS, cfg.MIRROR)
        self.lines = LineSplitter()
        self.playing = ""
        self.audible_since = self.visual_since = now
        self.test_until = now
        self.running = True

    def answer(self, line: bytes) -> bytes:
        """The reply to one line, b'' when it is ignored (corrupt, replayed, unknown)."""
        fields = decode(line)
        if not self.watch.accept(fields) or fields is None:
            return b""
        head, command, args = fields[:2], fields[2], fields[3:]
        if command == "HB" and len(args) == 2:
            self.watch.heartbeat(self.clock.ms(), args[0], args[1])
        elif command == "MIRROR" and args in (["0"], ["1"]):
            self.watch.mirror = args == ["1"]
        elif command == "ACK":
            self.watch.ack()
        elif command == "TEST":
            self.test_until = self.clock.ms() + 200
            return encode(head + ["TEST", "OK"])
        elif command == "VER":
            self.watch.version_asked = True
            return encode(head + ["VER", FW_VERSION, PROTOCOL])
        elif command == "REPL":
            refusal = self.watch.repl_refusal()
            if refusal:
                return encode(head + ["REPL", "NO", refusal])
            self.running = False
            return encode(head + ["REPL", "OK"])
        elif command != "HELLO":
            return encode(head + ["ERR", command[:16]])
        return encode(head + self.watch.status())

    async def reader(self) -> None:
        uart = self.board.uart
        while self.running:
            n = uart.any()
            data = uart.read(n) if n else None
            if data:
                before = self.lines.overlong
                lines = self.lines.feed(data)
                self.watch.bad += self.lines.overlong - before  # an over-long line is a corrupt frame too
                for line in lines:
                    reply = self.answer(line)
                    if reply:
                        uart.write(reply)
            await asyncio.sleep_ms(cfg.POLL_MS)

    def frame(self, now: int) -> tuple[bool, bool, bool, bool]:
        """Buzzer and LED states now (pure but for the clock it is given)."""
        if self.test_until > now:
            return True, True, True, True
        sounding = self.watch.sounding()
        if sounding != self.playing:
            old = self.playing
            self.playing = sounding
            if old[:1] != sounding[:1] or sounding == "failure":
                self.audible_since = now
            if old[-1:] != sounding[-1:] or sounding == "failure":
                self.visual_since = now
        if sounding == "failure":
            audible, visual = "H", "F"
        elif sounding:
            audible, visual = sounding[0], sounding[-1]
        else:
            return False, False, False, False
        buzz = buzzer_on(audible, now - self.audible_since)
        red, yellow, cyan = leds_on(visual, now - self.visual_since)
        return buzz, red, yellow, cyan

    async def player(self) -> None:
        shown = ""
        while self.running:
            now = self.clock.ms()
            self.watch.tick(now - self.watch.last_hb_ms)
            if self.watch.state != shown:
                shown = self.watch.state
                print("coproc:", shown)  # the USB console's log of transitions
            buzz, red, yellow, cyan = self.frame(now)
            self.board.show(buzz, red, yellow, cyan)
            await asyncio.sleep_ms(cfg.PLAY_MS)


def _reset(_timer: machine.Timer) -> None:
    machine.reset()  # the REPL was not completed in time: back to the firmware


async def run(app: App) -> None:
    reader = asyncio.create_task(app.reader())
    await app.player()
    await reader
    app.board.show(False, False, False, False)
    # Armed before the hand-over: from here on only a soft reset (a completed update) or
    # this timer gives the UART back to the firmware.
    machine.Timer(-1, mode=machine.Timer.ONE_SHOT, period=cfg.REPL_TIMEOUT_MS, callback=_reset)  # -1: a soft timer
    os.dupterm(app.board.uart)  # REPL asked for: the raw REPL now runs on this UART


def main() -> None:
    asyncio.run(run(App(Board())))


main()
