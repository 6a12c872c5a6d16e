"""Device simulators that write realistic streams to a pseudo-terminal or a real port.

The device end of a simulated cable is a pty master; the gateway opens a stable
symlink to the slave (`--port PATH`), like a udev name for a USB-serial adapter.
A cable pull closes the pty (the gateway's reads fail with EIO, as with an
unplugged adapter) and removes the symlink until the cable comes back. When PATH
is an existing character device (a real serial port on the bench) the simulator
writes there with pyserial instead and cable pulls are left to the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

import serial

from hil.masimo_sim import masimo_line
from hil.nonin_sim import nonin_packet
from hil.scenarios import SCENARIOS, Vitals, vitals_at

__all__ = ["PtyPort", "SimConfig", "simulate"]

log = logging.getLogger(__name__)

GARBAGE = bytes(range(0x80, 0xC0)) + b"\x00garbage\xff\xfe!!"


class PtyPort:
    """A pseudo-terminal pair whose slave is reachable at a fixed symlink path."""

    def __init__(self, link_path: str | Path, baud: int = 9600) -> None:
        self.link_path = Path(link_path)
        self.baud = baud
        self._master: int | None = None
        self._slave: int | None = None
        self.dropped_bytes = 0

    def open(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        speed = getattr(termios, f"B{self.baud}", termios.B9600)
        attrs[4] = attrs[5] = speed
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        name = os.ttyname(slave)
        tmp = self.link_path.with_name(self.link_path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(name)
        tmp.replace(self.link_path)  # atomic: the gateway never sees a half-made link
        return name

    def write(self, data: bytes) -> None:
        if self._master is None:
            self.dropped_bytes += len(data)  # cable unplugged: the bytes go nowhere
            return
        try:
            os.write(self._master, data)
        except BlockingIOError:
            self.dropped_bytes += len(data)  # nobody reading and the tty buffer is full
        except OSError:
            self.dropped_bytes += len(data)

    def drain_input(self) -> bytes:
        """Bytes the gateway wrote to the device (requests, keep-alives)."""
        if self._master is None:
            return b""
        try:
            return os.read(self._master, 4096)
        except OSError:
            return b""

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    @property
    def is_open(self) -> bool:
        return self._master is not None


class SerialPortWriter:
    """A real serial port on the bench (USB-serial to the gateway under test)."""

    def __init__(self, path: str, baud: int) -> None:
        self._port = serial.Serial(path, baudrate=baud, timeout=0, write_timeout=0)

    def write(self, data: bytes) -> None:
        with contextlib.suppress(serial.SerialTimeoutException):
            self._port.write(data)

    def close(self) -> None:
        self._port.close()


@dataclass(frozen=True, slots=True)
class SimConfig:
    device: str  # "masimo", "nonin", "intellivue", "datex", "medibus" or "hl7"
    port: str
    scenario: str = "steady"
    variant: str = "radical7"  # Masimo model, or MEDIBUS model (evita4, evitaxl, v500, apollo)
    data_format: int = 8  # Nonin format
    device_tz: tzinfo = UTC
    clock_offset_s: float = 0.0  # device clock error, for skew tests
    time_scale: float = 1.0  # scenario seconds per real second
    garbage_every_s: float = 0.0  # 0 = never
    cable_pull_every_s: float = 0.0  # 0 = never
    cable_down_s: float = 3.0
    baud: int = 9600
    rate_hz: float = 0.0  # frames per second; 0 = the device's own rate
    replay: str = ""  # IntelliVue: answer polls from this monitor -> host capture
    reboot_every_s: float = 0.0  # IntelliVue: reboot mid-poll every S seconds; 0 = never
    reboot_down_s: float = 15.0

    def period_s(self) -> float:
        if self.rate_hz > 0:
            return 1 / self.rate_hz
        if self.device == "nonin" and self.data_format in (2, 7):
            return 1 / 3  # 25 frames at 75 frames/s
        return 1.0


def _encoder(cfg: SimConfig) -> Callable[[float, int], bytes]:
    if cfg.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {cfg.scenario!r}; known: {', '.join(SCENARIOS)}")
    if cfg.device == "masimo":

        def masimo(t: float, n: int) -> bytes:
            now = datetime.now(cfg.device_tz) + timedelta(seconds=cfg.clock_offset_s)
            return masimo_line(cfg.variant, now.replace(tzinfo=None), vitals_at(cfg.scenario, t))

        return masimo
    if cfg.device == "nonin":
        return lambda t, n: nonin_packet(cfg.data_format, vitals_at(cfg.scenario, t), pleth_phase=n)
    raise ValueError(f"unknown device {cfg.device!r}")


def _is_real_port(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode) and not os.path.islink(path)
    except FileNotFoundError:
        return False


async def simulate(cfg: SimConfig, duration_s: float | None = None) -> None:
    """Write the device stream until `duration_s` elapses or the task is cancelled."""
    if cfg.device == "hl7" and cfg.port.startswith("tcp://"):
        await _hl7_tcp(cfg, duration_s)
        return
    if cfg.device in ("intellivue", "datex", "medibus", "hl7"):
        await _monitor(cfg, duration_s)
        return
    encode = _encoder(cfg)
    loop = asyncio.get_running_loop()
    start = last_garbage = last_pull = loop.time()
    port: PtyPort | SerialPortWriter
    if _is_real_port(cfg.port):
        port = SerialPortWriter(cfg.port, cfg.baud)
    else:
        port = PtyPort(cfg.port, cfg.baud)
        log.info("%s simulator on %s -> %s", cfg.device, cfg.port, port.open())
    n = 0
    try:
        while duration_s is None or loop.time() - start < duration_s:
            now = loop.time()
            if isinstance(port, PtyPort):
                port.drain_input()
                if cfg.cable_pull_every_s and now - last_pull >= cfg.cable_pull_every_s:
                    log.info("cable pull on %s for %.1f s", cfg.port, cfg.cable_down_s)
                    port.close()
                    await asyncio.sleep(cfg.cable_down_s)
                    port.open()
                    last_pull = loop.time()
            if cfg.garbage_every_s and now - last_garbage >= cfg.garbage_every_s:
                port.write(GARBAGE)
                last_garbage = now
            port.write(encode((now - start) * cfg.time_scale, n))
            n += 1
            await asyncio.sleep(cfg.period_s())
    finally:
        port.close()


async def _monitor(cfg: SimConfig, duration_s: float | None) -> None:
    """A request/response device: answer the gateway's association and polls."""
    from hil.datex_sim import S5Sim
    from hil.hl7_sim import Hl7SenderSim
    from hil.intellivue_bench import DeviceSim, MonitorBench
    from hil.intellivue_sim import MonitorSim
    from hil.medibus_sim import MODELS, DraegerSim

    if cfg.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {cfg.scenario!r}; known: {', '.join(SCENARIOS)}")

    def wall_clock() -> datetime:
        now = datetime.now(cfg.device_tz) + timedelta(seconds=cfg.clock_offset_s)
        return now.replace(tzinfo=None)

    def vitals(t: float) -> Vitals:
        return vitals_at(cfg.scenario, t * cfg.time_scale)

    sim: DeviceSim
    if cfg.device == "hl7":
        sim = Hl7SenderSim(vitals, wall_clock, period_s=cfg.period_s() * 5)
    elif cfg.device == "datex":
        sim = S5Sim(vitals, wall_clock)
    elif cfg.device == "medibus":
        if cfg.variant not in MODELS:
            raise ValueError(f"unknown MEDIBUS model {cfg.variant!r}; known: {', '.join(MODELS)}")
        sim = DraegerSim(cfg.variant, vitals, wall_clock, realtime=True)
    else:
        monitor = MonitorSim(vitals, wall_clock)
        if cfg.replay:
            monitor.replay(cfg.replay)
        sim = monitor
    port = PtyPort(cfg.port, cfg.baud)
    log.info("intellivue simulator on %s -> %s", cfg.port, port.open())
    try:
        await MonitorBench(sim, port).run(
            duration_s,
            cable_pull_every_s=cfg.cable_pull_every_s,
            cable_down_s=cfg.cable_down_s,
            reboot_every_s=cfg.reboot_every_s,
            reboot_down_s=cfg.reboot_down_s,
        )
    finally:
        port.close()


async def _hl7_tcp(cfg: SimConfig, duration_s: float | None) -> None:
    """An HL7 sender that connects to a gateway's tcp:// listener."""
    from urllib.parse import urlsplit

    from hil.hl7_sim import Hl7SenderSim, run_tcp

    where = urlsplit(cfg.port)
    if where.hostname is None or where.port is None:
        raise ValueError(f"{cfg.port!r}: expected tcp://HOST:PORT")
    sim = Hl7SenderSim(lambda t: vitals_at(cfg.scenario, t * cfg.time_scale), datetime.now, period_s=cfg.period_s() * 5)
    log.info("hl7 sender to %s", cfg.port)
    await run_tcp(sim, where.hostname, where.port, duration_s=duration_s)
