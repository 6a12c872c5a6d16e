"""Suite devices of every family the gateway drives, beside Masimo and Nonin
(hil/suite/devices.py): the monitors that answer polls on a line (Philips IntelliVue,
GE S/5, Dräger MEDIBUS), an HL7 v2 sender over MLLP/TCP and a BLE pulse oximeter.

Each reuses its family's simulator from hil/ (`MonitorSim`, `S5Sim`, `DraegerSim`,
`Hl7SenderSim`, the BLE `PlxContinuousSim` in hil/suite/radio_host.py) with the
suite's steerable vitals and device clock, and offers the suite's faults in the
family's own terms: a cable pull closes the pty (monitors), drops the TCP connection
for `down_s` (HL7) or takes the sensor out of radio range (BLE). A step's trigger is
the first write of bytes the simulator built after reading the step's values.

A device reboot (`reboot`, step `device_reboot`) is the device's restart with its
cable in: a monitor stops answering for `down_s` (whatever the gateway sends it is
lost) and comes back as a new simulator on the same pty, in its power-on state:
IntelliVue unassociated (polls ignored until the gateway associates again), S/5 with
no data request (nothing sent until one comes), MEDIBUS uninitialised (ICC every
3 s until answered). The HL7 sender loses power: its connection is abandoned with
neither FIN nor RST (a host without power sends nothing; the gateway finds out only
from its idle deadline or when the sender's new connection takes the slot, which its
per-peer eviction allows), it is gone `down_s`, then connects anew and sends again.
Its message control ids continue (MSH-10 must stay unique per sender: a counter that
restarted would reuse ids a receiver may already have; real senders persist it).
The step's end (`NAME/end`) is the first write after boot for a device that speaks
first (MEDIBUS's ICC, the HL7 sender's first message), and the moment it is ready for
one that only answers (IntelliVue, S/5): marking their end at their first answer
would make it wait for the gateway, the very thing a scenario checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

from hil.broker import Broker, free_port
from hil.hl7_sim import Hl7SenderSim
from hil.intellivue_bench import DeviceSim
from hil.scenarios import Vitals
from hil.simulate import GARBAGE, PtyPort
from hil.suite.check import Event
from hil.suite.devices import PROTOCOL, BenchDevice
from hil.suite.spec import Device, Scenario, Step

__all__ = [
    "PROTOCOLS",
    "SinkTail",
    "SuiteDevice",
    "device_keys",
    "make_device",
    "radio_entry",
    "stall",
    "store_event",
    "write_pairings",
]

# Suite family -> the gateway's protocol name.
PROTOCOLS: Final = {
    **PROTOCOL,
    "intellivue": "intellivue",
    "datex": "datex",
    "medibus": "medibus-evita4",
    "hl7": "hl7",
    "ble": "ble-plx-continuous",
}
_BAUD: Final = {"intellivue": 115200, "datex": 19200, "medibus": 19200}
STEP_S: Final = 0.01  # the monitors' bench answers every 10 ms, as hil/intellivue_bench.py does
_SPEAKS_FIRST: Final = frozenset({"medibus"})  # sends on its own after power-on (ICC until answered)
_RECONNECT_S: Final = 0.2


class SuiteDevice(Protocol):
    """What the runner asks of a bench device, whatever its family."""

    spec: Device
    frames: int

    def apply(self, step: Step) -> None: ...

    def garbage(self) -> None: ...

    def silence(self, down_s: float) -> None: ...

    async def cable_pull(self, down_s: float) -> None: ...

    async def reboot(self, down_s: float, end: str) -> None: ...

    async def run(self) -> None: ...


def _monitor_sim(family: str, vitals: Callable[[float], Vitals], clock: Callable[[], datetime]) -> DeviceSim:
    if family == "intellivue":
        from hil.intellivue_sim import MonitorSim

        return MonitorSim(vitals, clock)
    if family == "datex":
        from hil.datex_sim import S5Sim

        return S5Sim(vitals, clock)
    from hil.medibus_sim import DraegerSim

    return DraegerSim("evita4", vitals, clock, realtime=True)


class _Steered(BenchDevice):
    """A bench device whose simulator asks for the vitals itself: a step triggers on the
    first write after the simulator read the step's values."""

    def __init__(self, spec: Device, workdir: Path, on_trigger: Callable[[str, float], None], baud: int) -> None:
        super().__init__(spec, workdir, on_trigger)
        self.port = PtyPort(self.path, baud)
        self._read_pending = False
        self._end = ""  # a reboot's end: triggered by the first write after boot

    def vitals_at(self, t: float) -> Vitals:
        if self._pending:
            self._read_pending = True
        return self.vitals()

    def wrote(self) -> None:
        self.frames += 1
        if self._end:
            self._on_trigger(self._end, time.time())
            self._end = ""
        if self._read_pending:
            now = time.time()
            for name in self._pending:
                self._on_trigger(name, now)
            self._pending.clear()
            self._read_pending = False

    def silent(self) -> bool:
        return time.monotonic() < self.state.silent_until


class MonitorDevice(_Steered):
    """IntelliVue, S/5 or MEDIBUS on a pty: answers the gateway's association and polls."""

    def __init__(self, spec: Device, workdir: Path, on_trigger: Callable[[str, float], None]) -> None:
        super().__init__(spec, workdir, on_trigger, _BAUD[spec.family])
        self.sim: DeviceSim | None = _monitor_sim(spec.family, self.vitals_at, self.clock)

    async def reboot(self, down_s: float, end: str) -> None:
        self.sim = None  # power off: the session, the host's half-sent bytes, all gone
        await asyncio.sleep(down_s)
        self.sim = _monitor_sim(self.spec.family, self.vitals_at, self.clock)  # power-on state
        if self.spec.family in _SPEAKS_FIRST:
            self._end = end
        else:
            self._on_trigger(end, time.time())

    def step(self, t: float) -> None:
        data = self.port.drain_input() if self.port.is_open else b""
        if self.silent() or not self.port.is_open or self.sim is None:
            return  # a hung (or powered-off) monitor reads and answers nothing
        out = (self.sim.feed(data, t) if data else b"") + self.sim.poll(t)
        if out:
            self.port.write(out)
            self.wrote()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.port.open()
        try:
            while True:
                self.step(loop.time() - start)
                await asyncio.sleep(STEP_S)
        finally:
            self.port.close()


class Hl7Device(_Steered):
    """An HL7 sender (ORU^R01 every 1/rate_hz, ORU^R40 when SpO2 < 90 %) that connects to
    the gateway's MLLP listener; a cable pull drops the connection for `down_s`."""

    def __init__(self, spec: Device, workdir: Path, on_trigger: Callable[[str, float], None]) -> None:
        super().__init__(spec, workdir, on_trigger, 9600)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.sim = Hl7SenderSim(self.vitals_at, self.clock, period_s=1 / spec.rate_hz, ack_timeout_s=2.0)
        self._down_until = 0.0
        self._writer: asyncio.StreamWriter | None = None
        self._abandoned: list[asyncio.StreamWriter] = []  # connections a reboot left half-open
        self._boot_end = ""
        self.connections = 0

    def garbage(self) -> None:
        if self._writer is not None:
            self._writer.write(GARBAGE * 4)  # outside any MLLP block: the decoder skips it

    async def cable_pull(self, down_s: float) -> None:
        self._down_until = time.monotonic() + down_s
        if self._writer is not None:
            self._writer.close()  # the connection drops now; no reconnect before down_s
        await asyncio.sleep(down_s)

    async def reboot(self, down_s: float, end: str) -> None:
        """Power lost: the connection is left half-open (see the module's docstring);
        back after `down_s` on a new connection, `end` at its first message."""
        self._down_until = time.monotonic() + down_s
        if self._writer is not None:
            if isinstance(transport := self._writer.transport, asyncio.ReadTransport):
                transport.pause_reading()  # the powered-off host reads nothing
            self._abandoned.append(self._writer)
        self._boot_end = end  # armed on the first connection after boot
        await asyncio.sleep(down_s)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: float) -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() >= self._down_until and not writer.is_closing():
            try:
                async with asyncio.timeout(0.02):
                    data = await reader.read(65536)
                if not data:
                    return
            except TimeoutError:
                data = b""
            if self.silent() or time.monotonic() < self._down_until:
                continue  # quiet, or the power just went: nothing more on this connection
            t = loop.time() - start
            out = self.sim.feed(data, t) if data else self.sim.poll(t)
            if out:
                writer.write(out)
                await writer.drain()
                self.wrote()

    async def _connect_and_send(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        host, _, port = self.address.removeprefix("tcp://").rpartition(":")
        while True:
            if time.monotonic() < self._down_until:
                await asyncio.sleep(_RECONNECT_S)
                continue
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(_RECONNECT_S)  # the gateway is not listening yet (or restarting)
                continue
            self._writer, self.connections = writer, self.connections + 1
            self._end, self._boot_end = self._boot_end or self._end, ""
            self.sim.reboot()  # a new connection: the last unacknowledged message goes again
            try:
                await self._session(reader, writer, start)
            except OSError:
                pass
            finally:
                self._writer = None
                if writer not in self._abandoned:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

    async def run(self) -> None:
        try:
            await self._connect_and_send()
        finally:
            for writer in self._abandoned:
                writer.transport.abort()  # the scenario is over: no FIN owed to anyone


def make_device(
    spec: Device, workdir: Path, on_trigger: Callable[[str, float], None], wired: str = "", radio: Path | None = None
) -> SuiteDevice:
    """The bench device for `spec`'s family; `radio`: the BLE host's steering socket."""
    if spec.family in _BAUD:
        return MonitorDevice(spec, workdir, on_trigger)
    if spec.family == "hl7":
        return Hl7Device(spec, workdir, on_trigger)
    if spec.family == "ble":
        from hil.suite.radio_host import BleDevice

        return BleDevice(spec, on_trigger, radio or workdir / "radio.sock")
    return BenchDevice(spec, workdir, on_trigger, wired)


def ble_address(spec: Device) -> str:
    """A stable radio address per device id (the gateway's config and the host agree)."""
    n = sum(spec.id.encode()) % 256
    return f"C0:FF:EE:51:{len(spec.id) % 256:02X}:{n:02X}"


def device_keys(device: SuiteDevice, workdir: Path) -> tuple[str, str, dict[str, object]]:
    """The device's protocol, `port =` and further keys in the gateway's config."""
    from hil.bench import line_keys

    spec = device.spec
    protocol = PROTOCOLS[spec.family]
    if isinstance(device, Hl7Device):
        return protocol, device.address, {}  # a listener: no line, no stale bound
    if spec.family == "ble":
        return protocol, f"ble:{ble_address(spec)}", {"stale_after_s": 3.0, "reopen_min_s": 0.1, "reopen_max_s": 0.5}
    port = str(workdir / spec.id)
    keys = {**line_keys(protocol, port, _BAUD.get(spec.family, 9600)), "reopen_min_s": 0.1, "reopen_max_s": 0.5}
    return protocol, port, keys


def radio_entry(scenario: Scenario, steer: Path) -> tuple[str, ...]:
    """The gateway's entry point for this scenario: `bedside run` (()), or the radio
    host when a device is on the (simulated) radio."""
    if any(d.family == "ble" for d in scenario.devices):
        return ("hil.suite.radio_host", "--steer", str(steer))
    return ()


def write_pairings(registry_path: Path, devices: Sequence[Device]) -> None:
    """The bed's pairings before the gateway starts: a device with `patient` is paired
    to that patient at its bed; the others stay unpaired (quarantined)."""
    from appliance.registry import Registry

    paired = [d for d in devices if d.patient]
    if paired:
        registry = Registry(registry_path)
        for dev in paired:
            registry.pair(dev.id, dev.bed, dev.patient, by="hil")


def store_event(workdir: Path) -> Event:
    """The store's footprint on disk now (database, WAL, shared memory), as an event."""
    size = 0
    for path in workdir.glob("store.db*"):
        with contextlib.suppress(OSError):
            size += path.stat().st_size
    return Event(time.time(), "gateway", "store", {"bytes": size})


async def stall(broker: Broker, down_s: float) -> None:
    """The broker hangs for `down_s` (SIGSTOP, then SIGCONT): the gateway's publishes
    reach its socket and no PUBACK comes back, so what was in flight is sent again."""
    proc = broker.proc
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(down_s)
    finally:
        proc.send_signal(signal.SIGCONT)


class SinkTail:
    """The obs_ids the gateway's sink (its JSON-lines file) has recorded so far, read on
    from where the last look stopped: the drain looks every 0.2 s, and re-reading a
    sink of a million observations each time would starve the bench's own loop."""

    _OBS_ID: Final = re.compile(rb'"obs_id":\s*"([^"]+)"')

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids: set[str] = set()
        self._offset = 0
        self._partial = b""

    def read(self) -> set[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.ids
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            if b'"type":"observation"' in line and (m := self._OBS_ID.search(line)):
                self.ids.add(m.group(1).decode())
        return self.ids
