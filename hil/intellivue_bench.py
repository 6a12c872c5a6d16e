"""Runs a simulated request/response device (IntelliVue, S/5, MEDIBUS) on a port and
injects the field's failures.

Every few milliseconds the bench reads what the gateway wrote, lets the device
simulator answer (and send what it sends on its own), and writes that.
Failures on command (tests) or on a period (`bedside hil simulate`): a monitor
that goes silent, a reboot in the middle of a poll reply (half a frame
on the wire, then nothing until it has booted, then no association), and a
cable pull (the pty closes and comes back).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from hil.simulate import PtyPort

__all__ = ["DeviceSim", "MonitorBench"]

log = logging.getLogger(__name__)

STEP_S: Final = 0.01


class DeviceSim(Protocol):
    """A sans-IO device end: answers host bytes, and may send on its own (`poll`)."""

    def feed(self, data: bytes, t: float) -> bytes: ...

    def poll(self, t: float) -> bytes: ...

    def reboot(self) -> None: ...


class MonitorBench:
    def __init__(self, sim: DeviceSim, port: PtyPort) -> None:
        self.sim = sim
        self.port = port
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._silent_until = 0.0
        self._cut_next_for_s: float | None = None
        self.cut_frames = 0

    def go_silent(self, seconds: float) -> None:
        """The monitor hangs: it reads nothing useful and answers nothing."""
        self._silent_until = self._loop.time() + seconds

    def reboot_mid_poll(self, down_s: float) -> None:
        """The next answer is cut in half on the wire, then the monitor reboots."""
        self._cut_next_for_s = down_s

    async def pull_cable(self, down_s: float) -> None:
        log.info("cable pull on %s for %.1f s", self.port.link_path, down_s)
        self.port.close()
        await asyncio.sleep(down_s)
        self.port.open()

    def step(self) -> None:
        now = self._loop.time()
        data = self.port.drain_input() if self.port.is_open else b""
        if now < self._silent_until:
            return
        t = now - self._start
        out = self.sim.feed(data, t) if data else b""
        out += self.sim.poll(t)
        if not out:
            return
        if self._cut_next_for_s is not None:
            self.port.write(out[: len(out) // 2])
            self.cut_frames += 1
            self.sim.reboot()
            self.go_silent(self._cut_next_for_s)
            self._cut_next_for_s = None
            return
        self.port.write(out)

    async def run(
        self,
        duration_s: float | None = None,
        *,
        cable_pull_every_s: float = 0.0,
        cable_down_s: float = 3.0,
        reboot_every_s: float = 0.0,
        reboot_down_s: float = 15.0,
    ) -> None:
        last_pull = last_reboot = self._loop.time()
        while duration_s is None or self._loop.time() - self._start < duration_s:
            now = self._loop.time()
            if cable_pull_every_s and now - last_pull >= cable_pull_every_s:
                await self.pull_cable(cable_down_s)
                last_pull = self._loop.time()
            if reboot_every_s and now - last_reboot >= reboot_every_s:
                log.info("monitor reboot mid-poll, down %.1f s", reboot_down_s)
                self.reboot_mid_poll(reboot_down_s)
                last_reboot = now
            self.step()
            await asyncio.sleep(STEP_S)
