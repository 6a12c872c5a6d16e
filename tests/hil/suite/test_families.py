"""The suite's monitors and HL7 sender through a device reboot, on a real pty / TCP.

Invariants: a rebooted monitor answers nothing while off, comes back in its power-on
state (IntelliVue: unassociated, polls go unanswered until the gateway associates
again, and the first bytes it writes after boot are the association accept; S/5:
silent until a new data request; MEDIBUS: ICC on its own, before any host byte);
the HL7 sender's old connection is left half-open (no FIN while it is off), a new one
comes after `down_s` and its control ids continue."""

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.core.clock import FixedClock
from appliance.core.model import Reading
from drivers.datex.codec import DatexCodec
from drivers.hl7.mllp import MllpDecoder, frame
from drivers.intellivue.codec import IntelliVueCodec, SessionState
from drivers.intellivue.frame import FrameDecoder
from drivers.medibus.frame import MedibusParser, Message
from hil.intellivue_sim import MonitorSim, MonitorState
from hil.suite.families import Hl7Device, MonitorDevice
from hil.suite.spec import Device

DOWN_S = 0.2


class Wire:
    """The gateway's end of a monitor's pty."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    def read(self) -> bytes:
        out = b""
        try:
            while data := os.read(self.fd, 65536):
                out += data
        except BlockingIOError:
            pass
        return out

    def write(self, data: bytes) -> None:
        if data:
            os.write(self.fd, data)


_OPEN: list[tuple[MonitorDevice, Wire]] = []


def _into(triggers: dict[str, float]) -> Callable[[str, float], None]:
    def record(name: str, t: float) -> None:
        triggers.setdefault(name, t)

    return record


def _state(dev: MonitorDevice) -> MonitorState:
    assert isinstance(dev.sim, MonitorSim)
    return dev.sim.state


@pytest.fixture(autouse=True)
def _close_ptys() -> Iterator[None]:
    yield
    while _OPEN:
        dev, wire = _OPEN.pop()
        os.close(wire.fd)
        dev.port.close()


def _monitor(family: str, tmp_path: Path) -> tuple[MonitorDevice, Wire, dict[str, float]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    triggers: dict[str, float] = {}
    dev = MonitorDevice(Device("m", family, "B"), tmp_path, _into(triggers))
    dev.port.open()
    wire = Wire(tmp_path / "m")
    _OPEN.append((dev, wire))
    return dev, wire, triggers


def _turn(dev: MonitorDevice, wire: Wire, sent: bytes, t: float) -> bytes:
    """The gateway writes `sent`; the device takes a step; what it answered."""
    wire.write(sent)
    time.sleep(0.002)  # the pty hands the bytes over
    dev.step(t)
    time.sleep(0.002)
    return wire.read()


async def test_a_rebooted_intellivue_ignores_polls_until_the_gateway_associates_again(tmp_path: Path) -> None:
    dev, wire, triggers = _monitor("intellivue", tmp_path)
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    codec = IntelliVueCodec("m", clock)
    events = codec.opened()

    def run(seconds: float, t0: float) -> bytes:
        nonlocal events
        got, t = b"", t0
        while t < t0 + seconds:
            answer = _turn(dev, wire, codec.data_to_send(), t)
            got += answer
            events += codec.feed(answer)
            clock.advance(0.1)
            t += 0.1
            events += codec.tick()
        return got

    run(2.0, 0.0)
    assert codec.state is SessionState.POLLING and any(isinstance(e, Reading) for e in events)
    old = dev.sim
    off = time.time()
    reboot = asyncio.create_task(dev.reboot(DOWN_S, "boot/end"))
    await asyncio.sleep(0)
    assert run(1.0, 2.0) == b""  # off: the polls go nowhere
    await reboot
    assert triggers["boot/end"] - off >= DOWN_S - 0.01  # answer-only: back when it can answer
    assert dev.sim is not old and _state(dev) is MonitorState.IDLE
    before = len(events)
    assert run(3.0, 3.0) == b""  # back, unassociated: the gateway's polls go unanswered
    assert codec.state is SessionState.POLLING and not any(isinstance(e, Reading) for e in events[before:])
    back = run(9.0, 6.0)  # the gateway's silence rule (10 s without a frame) associates again
    first = FrameDecoder().feed(back)[0]
    assert first[0] == 0x0E  # the first bytes after boot: the association accept
    assert isinstance(dev.sim, MonitorSim) and dev.sim.associations == 1 and _state(dev) is MonitorState.POLLABLE
    assert any(isinstance(e, Reading) for e in events[before:])
    assert any(getattr(e, "kind", "") == "session_lost" for e in events[before:])


async def test_a_rebooted_medibus_device_says_icc_first_and_an_s5_waits_for_a_data_request(tmp_path: Path) -> None:
    evita, evita_wire, evita_triggers = _monitor("medibus", tmp_path / "evita")
    for t in (0.0, 0.1):
        _turn(evita, evita_wire, b"", t)
    off = time.time()
    await evita.reboot(DOWN_S, "boot/end")
    assert "boot/end" not in evita_triggers  # it speaks first: the end is its first write
    first = _turn(evita, evita_wire, b"", 1.0)  # no host byte at all
    messages = [m for m in MedibusParser().feed(first) if isinstance(m, Message)]
    assert messages and messages[0].kind == "command" and messages[0].code == 0x51  # ICC: initialise me
    assert evita_triggers["boot/end"] - off >= DOWN_S - 0.01

    s5, s5_wire, _ = _monitor("datex", tmp_path / "s5")
    codec = DatexCodec("s5", FixedClock(datetime(2026, 1, 1, tzinfo=UTC)))
    codec.opened()
    assert _turn(s5, s5_wire, codec.data_to_send(), 0.0)  # a data request: a record comes back
    await s5.reboot(DOWN_S, "boot/end")
    assert all(_turn(s5, s5_wire, b"", t) == b"" for t in (5.0, 10.0, 15.0))  # the request was forgotten
    codec.opened()
    assert _turn(s5, s5_wire, codec.data_to_send(), 16.0)  # asked again: it sends


class _Receiver:
    """The gateway's MLLP listener as a sender sees it: ACKs every message."""

    def __init__(self) -> None:
        self.connections: list[tuple[float, asyncio.StreamReader, list[str]]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        ids: list[str] = []
        self.connections.append((time.time(), reader, ids))
        mllp = MllpDecoder()
        while data := await reader.read(65536):
            for block in mllp.feed(data):
                assert isinstance(block, bytes)
                control_id = block.split(b"|", 10)[9].decode()
                ids.append(control_id)
                writer.write(frame(f"MSH|^~\\&|GW||||||ACK|A{control_id}|P|2.6\rMSA|AA|{control_id}\r".encode()))


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_rebooted_hl7_sender_leaves_its_connection_half_open_and_continues_its_ids(tmp_path: Path) -> None:
    receiver = _Receiver()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    triggers: dict[str, float] = {}
    dev = Hl7Device(Device("h", "hl7", "B", rate_hz=10.0), tmp_path, _into(triggers))
    dev.address = f"tcp://127.0.0.1:{port}"
    task = asyncio.create_task(dev.run())
    try:
        await _until(lambda: bool(receiver.connections) and len(receiver.connections[0][2]) >= 3)
        off = time.time()
        reboot = asyncio.create_task(dev.reboot(DOWN_S, "boot/end"))
        await asyncio.sleep(DOWN_S - 0.05)
        old_reader, old_ids = receiver.connections[0][1], receiver.connections[0][2]
        assert len(receiver.connections) == 1 and not old_reader.at_eof()  # no FIN: half-open
        sent_before = len(old_ids)
        await reboot
        await _until(lambda: len(receiver.connections) == 2 and len(receiver.connections[1][2]) >= 2)
        assert len(old_ids) == sent_before and not old_reader.at_eof()  # nothing more, still no FIN
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        for writer in receiver.writers:
            writer.close()
        await asyncio.sleep(0.05)  # the handlers see the end of their connections
    opened, _, new_ids = receiver.connections[1]
    assert opened - off >= DOWN_S - 0.01 and triggers["boot/end"] >= opened
    numbers = [int(i.removeprefix("BENCH")) for i in [*old_ids, *new_ids]]
    assert numbers == sorted(numbers) and min(int(i.removeprefix("BENCH")) for i in new_ids) > max(
        int(i.removeprefix("BENCH")) for i in old_ids
    )  # ids continue past the reboot, none reused


@pytest.mark.parametrize("family", ["intellivue", "datex", "medibus"])
async def test_a_powered_off_monitor_reads_and_answers_nothing(family: str, tmp_path: Path) -> None:
    dev, wire, _ = _monitor(family, tmp_path)
    reboot = asyncio.create_task(dev.reboot(1.0, "boot/end"))
    await asyncio.sleep(0)
    assert _turn(dev, wire, b"\x7e\x01\x02garbage and requests", 0.0) == b""
    reboot.cancel()
    await asyncio.gather(reboot, return_exceptions=True)
