"""An HL7 sender (a device gateway or spot-check monitor) for the bench: PCD-01 and PCD-04.

Sans-IO `Hl7SenderSim`: `poll(t)` gives the next MLLP block when one is due, `feed`
takes the receiver's ACKs. Like a real sender it waits for the ACK of each message
before the next, and resends the same message (same MSH-10) when no ACK comes
within `ack_timeout_s`. Every `period_s` it reports vitals as an ORU^R01; when
SpO2 falls below 90 % it reports an ORU^R40 alert start, and the end when it
recovers. `run_tcp` drives it over a TCP (optionally TLS) connection; on a serial
port the request/response bench drives it like the other device simulators.

Message shapes follow the IHE PCD examples in shared/protocols/hl7-mllp.md §3, §5.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import Final

from drivers.hl7.mllp import MllpDecoder, Oversized, frame
from hil.scenarios import Vitals

__all__ = ["Hl7SenderSim", "oru_r01", "oru_r40", "run_tcp"]

MSH: Final = (
    "MSH|^~\\&|BENCH_GW^0123456789ABCDEF^EUI-64|BENCH|||{ts}||{type}|{id}|P|2.6|||AL|NE||UNICODE UTF-8|||{profile}"
)
PCD01: Final = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
PCD04: Final = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO"


def _ts(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S") + "+0000"


def oru_r01(control_id: str, when: datetime, v: Vitals) -> bytes:
    ts = _ts(when)
    rows = [
        "PID|||BENCH-1^^^Bench^MR||Doe^Jane^^^^^L",
        "PV1||I|ICU^1^1",
        f"OBR|1|{control_id}^BENCH_GW|{control_id}^BENCH_GW|182777000^monitoring of patient^SCT|||{ts}",
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
        f"OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{v.pulse:g}|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120||||R|||{ts}",
        f"OBX|3|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.2.1.1|118|mm[Hg]^mm[Hg]^UCUM|||||R|||{ts}",
        f"OBX|4|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.2.1.2|76|mm[Hg]^mm[Hg]^UCUM|||||R|||{ts}",
        f"OBX|5|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.2.1.3|90|mm[Hg]^mm[Hg]^UCUM|||||R|||{ts}",
        f"OBX|6|NM|151562^MDC_RESP_RATE^MDC|1.3.1.1|16|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R|||{ts}",
    ]
    if not v.sensor_off:
        rows.append(
            f"OBX|7|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.4.1.1|{v.spo2:g}|262688^MDC_DIM_PERCENT^MDC|||||R|||{ts}"
        )
    head = MSH.format(ts=ts, type="ORU^R01^ORU_R01", id=control_id, profile=PCD01)
    return "\r".join([head, *rows]).encode() + b"\r"


def oru_r40(control_id: str, when: datetime, spo2: float, start: bool) -> bytes:
    ts = _ts(when)
    phase, state = ("start", "active") if start else ("end", "inactive")
    rows = [
        "PID|||BENCH-1^^^Bench^MR||Doe^Jane^^^^^L",
        f"OBR|1|{control_id}^BENCH_GW|{control_id}^BENCH_GW|196616^MDC_EVT_ALARM^MDC|||{ts}"
        + "|" * 22
        + "^A1&BENCH_GW&0123456789ABCDEF&EUI-64",
        f"OBX|1|ST|196670^MDC_EVT_LO^MDC|1.4.1.150456.1|Low SpO2|||L~PH~SP|||F|||{ts}",
        f"OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.4.1.150456.2|{spo2:g}|262688^MDC_DIM_PERCENT^MDC|90-100||||F|||{ts}",
        f"OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.4.1.150456.3|{phase}||||||F",
        f"OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.4.1.150456.4|{state}||||||F",
    ]
    head = MSH.format(ts=ts, type="ORU^R40^ORU_R40", id=control_id, profile=PCD04)
    return "\r".join([head, *rows]).encode() + b"\r"


class Hl7SenderSim:
    def __init__(
        self,
        vitals: Callable[[float], Vitals],
        wall_clock: Callable[[], datetime],
        *,
        period_s: float = 5.0,
        ack_timeout_s: float = 5.0,
    ) -> None:
        self.vitals = vitals
        self.wall_clock = wall_clock
        self.period_s = period_s
        self.ack_timeout_s = ack_timeout_s
        self.acks: list[tuple[str, str]] = []  # (MSA-1, MSA-2)
        self.sent = 0
        self.resent = 0
        self._mllp = MllpDecoder()
        self._n = 0
        self._next_s = 0.0
        self._waiting: tuple[str, bytes, float] | None = None  # control id, block, sent at
        self._alarm_on = False
        self._queue: list[bytes] = []

    def reboot(self) -> None:
        """A new connection (the sender restarted or reconnected): the message that was
        never acknowledged goes first again, same control id (a sender keeps its outbound
        queue until the commit ACK: HL7 original mode)."""
        if self._waiting is not None:
            self._queue.insert(0, self._waiting[1])
            self.resent += 1
        self._waiting, self._mllp = None, MllpDecoder()

    def feed(self, data: bytes, t: float) -> bytes:
        for block in self._mllp.feed(data):
            if isinstance(block, Oversized):
                continue  # no ACK is that long: not one of ours
            text = block.decode("utf-8", errors="replace")
            msa = next((line.split("|") for line in text.split("\r") if line.startswith("MSA|")), None)
            if msa is not None and len(msa) > 2:
                self.acks.append((msa[1], msa[2]))
                if self._waiting is not None and msa[2] == self._waiting[0]:
                    self._waiting = None
        return self.poll(t)

    def poll(self, t: float) -> bytes:
        if self._waiting is not None:
            control_id, block, sent_at = self._waiting
            if t - sent_at < self.ack_timeout_s:
                return b""
            self.resent += 1  # no ACK: the same message again, same control id
            self._waiting = (control_id, block, t)
            return block
        if not self._queue and t >= self._next_s:
            self._next_s = t + self.period_s
            self._report(t)
        if not self._queue:
            return b""
        block = self._queue.pop(0)
        control_id = block.split(b"|", 10)[9].decode()
        self._waiting = (control_id, block, t)
        self.sent += 1
        return block

    def _report(self, t: float) -> None:
        v, now = self.vitals(t), self.wall_clock()
        self._n += 1
        self._queue.append(frame(oru_r01(f"BENCH{self._n:06d}", now, v)))
        low = not v.sensor_off and v.spo2 < 90
        if low != self._alarm_on:
            self._alarm_on = low
            self._n += 1
            self._queue.append(frame(oru_r40(f"BENCH{self._n:06d}", now, v.spo2, start=low)))


async def run_tcp(
    sim: Hl7SenderSim,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    duration_s: float | None = None,
    step_s: float = 0.02,
) -> None:
    """Connect (and reconnect after a refused or dropped connection) and send."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while duration_s is None or loop.time() - start < duration_s:
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
        except (OSError, ssl.SSLError):
            await asyncio.sleep(0.5)
            continue
        sim.reboot()
        try:
            while duration_s is None or loop.time() - start < duration_s:
                try:
                    async with asyncio.timeout(step_s):
                        data = await reader.read(65536)
                    if not data:
                        break
                except TimeoutError:
                    data = b""
                out = sim.feed(data, loop.time() - start) if data else sim.poll(loop.time() - start)
                if out:
                    writer.write(out)
                    await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()
