"""A small board model of the RP2040's `machine` module for real MicroPython off the board.

Loaded by hil/mpy/host.mjs in place of the firmware's `machine`: `UART` moves bytes
through the host (a pty master on the other side), `Pin` and `PWM` report every
level change with its time to the host, which prints it as a JSON line. Only what
the firmware uses is modelled; anything else raises AttributeError like a missing
port feature would.
"""

import board_host  # type: ignore[import-not-found]  # registered by host.mjs


class Pin:
    OUT = 1
    IN = 0

    def __init__(self, pin_id: int, mode: int = -1, value: int | None = None) -> None:
        self.id = pin_id
        self._value = 0
        if value is not None:
            self.value(value)

    def value(self, v: int | None = None) -> int:
        if v is None:
            return self._value
        v = 1 if v else 0
        if v != self._value:
            self._value = v
            board_host.pin(self.id, v)
        return v

    def on(self) -> None:
        self.value(1)

    def off(self) -> None:
        self.value(0)


class PWM:
    """Duty cycle 0 = silent, anything else = sounding: the host logs on/off per change."""

    def __init__(self, pin: Pin, freq: int = 1000, duty_u16: int = 0) -> None:
        self.pin = pin
        self._freq = freq
        self._duty = -1
        self.duty_u16(duty_u16)

    def freq(self, hz: int | None = None) -> int:
        if hz is not None:
            self._freq = hz
        return self._freq

    def duty_u16(self, duty: int | None = None) -> int:
        if duty is None:
            return self._duty
        if (duty > 0) != (self._duty > 0):
            board_host.pin(self.pin.id, 1 if duty > 0 else 0)
        self._duty = duty
        return duty


class UART:
    def __init__(self, uart_id: int, baudrate: int = 115200, **kwargs: object) -> None:
        self.id = uart_id
        self.baudrate = baudrate
        self._rx = b""

    def _pull(self) -> None:
        data = board_host.read()
        if data is not None:
            self._rx += bytes(data)

    def any(self) -> int:
        self._pull()
        return len(self._rx)

    def read(self, n: int = -1) -> bytes | None:
        self._pull()
        if not self._rx:
            return None
        if n < 0:
            n = len(self._rx)
        out, self._rx = self._rx[:n], self._rx[n:]
        return out

    def write(self, data: bytes) -> int:
        board_host.write(bytes(data).hex())
        return len(data)


class Timer:
    """A software timer (the RP2040 port's `machine.Timer()`); the host runs the callback
    from its event loop, also while the REPL owns the UART. A reset stops every timer."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, timer_id: int = -1, *, mode: int = 1, period: int = -1, callback: object = None) -> None:
        self._handle = -1
        self.mode, self.period, self.callback = mode, period, callback
        if period >= 0 and callback is not None:
            self._handle = board_host.timer(period, 1 if mode == Timer.PERIODIC else 0, self._fire)

    def _fire(self) -> None:
        if callable(self.callback):
            self.callback(self)

    def deinit(self) -> None:
        if self._handle >= 0:
            board_host.timer_cancel(self._handle)
            self._handle = -1


def soft_reset() -> None:
    board_host.soft_reset()


def reset() -> None:
    """A hard reset: the host reports `reset`, then boots the files in /flash afresh."""
    board_host.reset()


def unique_id() -> bytes:
    return b"\xe6\x61\x64\x08\x43\x5f\x2a\x27"  # a fixed id: the model is one board
