"""A Dräger ventilator's end of MEDIBUS (Evita 4, Evita XL, V500, Apollo profiles).

Sans-IO (`feed` host bytes, `poll(t)` for what the device sends on its own), like
the other device simulators. The device does what Dräger devices do and what
trips naive hosts: it sends ICC every 3 s until answered, then asks for the host's
identification (embedded in its ICC response when the host initialises), sends
NOP when idle, drops the session after 3 s without a byte, repeats an unanswered
command after 10 s and re-initialises after three, answers every command (empty
for unsupported ones: the Evita 4 has no codepage 2 or clock request), NAKs
corrupt commands, and can interleave realtime bytes and a DC1/DC3 pause.

Formats: shared/protocols/medibus.md §2-§8.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from drivers.medibus.data import GERMAN_MONTHS
from drivers.medibus.frame import DC1, DC3, NAK, MedibusParser, Message, command, response
from hil.scenarios import Vitals

__all__ = ["MODELS", "DraegerSim", "measured_response"]

NOP, ICC, STOP, DEV_ID = 0x30, 0x51, 0x55, 0x52
# model -> (device id, name, codes answered)
MODELS: Final[dict[str, tuple[str, str, frozenset[int]]]] = {
    "evita4": ("8240", "Evita 4", frozenset(b"$%&')*.0JQRSTUj")),
    "evitaxl": ("8260", "EvitaXL", frozenset(b"$%&'()*+,-.0JQRSTU")),
    "v500": ("8270", "Evita V500", frozenset(b"$%&'()*+,-.0JQRSTU")),
    "apollo": ("8290", "Apollo", frozenset(b"$%&'()*+,-.0JQRSTU")),
}
REALTIME_SAMPLE: Final = bytes((0xD1, 0x83, 0xA5))  # a sync byte and one 12-bit curve value


def _field(value: float, decimals: int = 0) -> bytes:
    text = f"{value:.{decimals}f}" if decimals else f"{round(value)}"
    return text.rjust(4)[:4].encode("ascii")


def measured_response(v: Vitals, t: float = 0.0) -> bytes:
    """Codepage 1 measured data for these vitals (sensor off: SpO2 and pulse omitted)."""
    rows = [
        (b"78", _field(5)),  # PEEP mbar
        (b"7D", _field(22)),  # Ppeak mbar
        (b"B9", _field(7.4, 1)),  # minute volume L/min
        (b"D6", _field(14)),  # total breathing frequency
        (b"F0", _field(40)),  # FiO2 %
        (b"E6", _field(38)),  # etCO2 mmHg
    ]
    if not v.sensor_off:
        rows += [(b"EB", _field(v.spo2)), (b"E1", _field(v.pulse))]
    return b"".join(code + value for code, value in rows)


class DraegerSim:
    def __init__(
        self,
        model: str,
        vitals: Callable[[float], Vitals],
        wall_clock: Callable[[], datetime],
        *,
        realtime: bool = False,
    ) -> None:
        self.device_id, self.name, self.supported = MODELS[model]
        self.vitals = vitals
        self.wall_clock = wall_clock
        self.realtime = realtime
        self.parser = MedibusParser()
        self.initialised = False
        self.stopped = 0
        self.host_identity: bytes | None = None
        self.requests: list[int] = []
        self.naks_sent = 0
        self._t = 0.0
        self._last_rx = self._last_tx = self._last_icc = -99.0
        self._pending: tuple[int, float, int] | None = None  # our command awaiting the host: code, sent, tries
        self._resume_at: float | None = None

    def reboot(self) -> None:
        self.initialised = False
        self.parser = MedibusParser()
        self._pending = None

    def pause_host(self, t: float, seconds: float) -> bytes:
        """DC1 now, DC3 after `seconds` (sent by `poll`)."""
        self._resume_at = t + seconds
        return bytes((DC1,))

    def feed(self, data: bytes, t: float) -> bytes:
        self._t = t
        out = bytearray()
        items = self.parser.feed(data)
        if data:
            self._last_rx = t
        for item in items:
            if isinstance(item, Message):
                out += self._handle(item)
        while self.parser.bad_commands:
            self.parser.bad_commands.pop()
            out += response(NAK)
            self.naks_sent += 1
        return self._emit(bytes(out), t)

    def poll(self, t: float) -> bytes:
        self._t = t
        out = bytearray()
        if self._resume_at is not None and t >= self._resume_at:
            self._resume_at = None
            out.append(DC3)
        if not self.initialised:
            if t - self._last_icc >= 3.0:
                self._last_icc = t
                out += command(ICC)
            return self._emit(bytes(out), t)
        if t - self._last_rx > 3.0:
            self.initialised = False  # link timeout: the device starts over with ICC
            return self._emit(bytes(out), t)
        if self._pending is not None:
            code, sent, tries = self._pending
            if t - sent > 10.0:
                if tries >= 3:
                    self.initialised, self._pending = False, None
                else:
                    self._pending = (code, t, tries + 1)
                    out += command(code)
        elif t - self._last_tx > 2.0:
            self._pending = (NOP, t, 1)
            out += command(NOP)
        return self._emit(bytes(out), t)

    def _emit(self, out: bytes, t: float) -> bytes:
        if out:
            self._last_tx = t
            if self.realtime and len(out) > 4:
                out = out[:3] + REALTIME_SAMPLE + out[3:]  # realtime bytes land inside a message
        return out

    def _handle(self, msg: Message) -> bytes:
        if msg.kind == "response":
            if msg.code == ICC and not self.initialised:
                self.initialised = True
                self._pending = (DEV_ID, self._t, 1)
                return command(DEV_ID)
            if self._pending is not None and msg.code == self._pending[0]:
                if msg.code == DEV_ID:
                    self.host_identity = msg.data
                self._pending = None
            return b""
        self.requests.append(msg.code)
        if msg.code == ICC:
            self.initialised = True
            self._pending = (DEV_ID, self._t, 1)
            # The identification request rides inside the ICC response, as Dräger devices do.
            body = response(ICC)
            return body[:2] + command(DEV_ID) + body[2:]
        if msg.code == STOP:
            self.initialised = False
            self.stopped += 1
            return response(STOP)
        if not self.initialised or msg.code not in self.supported:
            return response(msg.code)  # every command is answered, unsupported ones empty
        return response(msg.code, self._data(msg.code))

    def _data(self, code: int) -> bytes:
        v = self.vitals(self._t)
        if code == ord("$"):
            return measured_response(v, self._t)
        if code == ord("'"):
            alarms = b""
            if not v.sensor_off and v.spo2 < 90:
                alarms += b"\x3707" + b"SPO2 $&".ljust(12)  # priority 7, code 07 SPO2 LOW
            if v.pulse > 120:
                alarms += b"\x4e1E" + b"SPO2 PULS HI".ljust(12)  # priority 30
            return alarms
        if code == ord("("):
            now = self.wall_clock()
            return f"{now:%H:%M:%S}{now:%d}-{GERMAN_MONTHS[now.month - 1]}-{now:%y}".encode("ascii")
        if code == DEV_ID:
            return f"{self.device_id}'{self.name}'04.00:04.00".encode("ascii")
        return b""
