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
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import serial

from hil.bench import DemoDevice, DemoEnv, SimUsageError, family_named, line_keys, simulator_for
from hil.scenarios import SCENARIOS, Vitals, vitals_at

if TYPE_CHECKING:
    from hil.intellivue_bench import DeviceSim

__all__ = ["LineSim", "PtyPort", "SimConfig", "line_simulator", "run_monitor", "run_periodic", "simulate"]

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
    device: str  # the family's name (DeviceFamily.name) whose simulator runs
    port: str
    scenario: str = "steady"
    variant: str = "radical7"  # the device model, where a family simulates several
    data_format: int = 8  # the data format, where a family's devices speak several
    device_tz: tzinfo = UTC
    clock_offset_s: float = 0.0  # device clock error, for skew tests
    time_scale: float = 1.0  # scenario seconds per real second
    garbage_every_s: float = 0.0  # 0 = never
    cable_pull_every_s: float = 0.0  # 0 = never
    cable_down_s: float = 3.0
    baud: int = 9600
    rate_hz: float = 0.0  # frames per second; 0 = the device's own rate
    replay: str = ""  # answer polls from this monitor -> host capture (simulators that replay)
    reboot_every_s: float = 0.0  # reboot mid-poll every S seconds; 0 = never
    reboot_down_s: float = 15.0

    def period_s(self) -> float:
        return 1 / self.rate_hz if self.rate_hz > 0 else 1.0

    def wall_clock(self) -> datetime:
        """The device's clock: its time zone, its error, no zone on the wire."""
        now = datetime.now(self.device_tz) + timedelta(seconds=self.clock_offset_s)
        return now.replace(tzinfo=None)

    def vitals(self, t: float) -> Vitals:
        """The scenario at `t` real seconds into the run."""
        return vitals_at(self.scenario, t * self.time_scale)


class LineSim:
    """A family's simulator for devices on a line: a pty (the demo, the bench), a real
    serial port, or a listener's tcp:// address. `bedside hil simulate` offers every
    family whose simulator is one; a family overrides `stream` and, where it has its own
    defaults or refusals, `prepare`."""

    demo: Sequence[DemoDevice] = ()
    replays = False  # answers polls from a capture (`--replay`)

    def prepare(self, cfg: SimConfig) -> SimConfig:
        """The settings with the family's defaults (its baud, its model); SimUsageError
        for settings it refuses."""
        return cfg

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        raise NotImplementedError

    def port(self, device: DemoDevice, env: DemoEnv) -> str:
        return str(env.workdir / device.device_id)  # a pty symlink

    def config(self, device: DemoDevice, port: str) -> dict[str, object]:
        cfg: SimConfig = device.settings
        return line_keys(device.protocol, port, cfg.baud)

    def run(self, device: DemoDevice, port: str, env: DemoEnv) -> Coroutine[Any, Any, None]:
        cfg: SimConfig = device.settings
        return self.stream(replace(cfg, port=port, time_scale=cfg.time_scale * env.speed), None)


def line_simulator(name: str) -> LineSim:
    """The line simulator of the family called `name` (SimUsageError: none)."""
    try:
        sim = simulator_for(family_named(name))
    except KeyError:
        sim = None
    if not isinstance(sim, LineSim):
        raise SimUsageError(f"no line simulator for device {name!r}")
    return sim


def _is_real_port(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode) and not os.path.islink(path)
    except FileNotFoundError:
        return False


def _check_scenario(cfg: SimConfig) -> None:
    if cfg.scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {cfg.scenario!r}; known: {', '.join(SCENARIOS)}")


async def simulate(cfg: SimConfig, duration_s: float | None = None) -> None:
    """Write the device stream until `duration_s` elapses or the task is cancelled."""
    _check_scenario(cfg)
    await line_simulator(cfg.device).stream(cfg, duration_s)


async def run_periodic(
    cfg: SimConfig, encode: Callable[[float, int], bytes], duration_s: float | None, period_s: float | None = None
) -> None:
    """A device that sends on its own: `encode(scenario seconds, frame number)` every period."""
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
            await asyncio.sleep(period_s or cfg.period_s())
    finally:
        port.close()


async def run_monitor(cfg: SimConfig, sim: DeviceSim, duration_s: float | None) -> None:
    """A request/response device on a pty: answer the gateway's association and polls."""
    from hil.intellivue_bench import MonitorBench

    port = PtyPort(cfg.port, cfg.baud)
    log.info("%s simulator on %s -> %s", cfg.device, cfg.port, port.open())
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
