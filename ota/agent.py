"""The update agent on the box: one task under the gateway's supervisor.

Each poll (period with jitter): trust the clock only if it is not behind the
persisted time floor; refresh TUF metadata and choose a release; download it
(resuming) and verify it against the signed metadata; install it with RAUC; wait
for a safe moment (no high or medium alarm at the bed) to reboot, never longer
than `max_deferral_s` without telling the fleet, never forcing. After the reboot
`resume()` runs the health gate and commits (`mark-good`) or rolls back
(`mark-bad` + reboot into the previous slot). A release that failed to come up
is given up, so a box cannot flip between slots forever.

Every step is persisted first (lifecycle.py) and reported as a technical event
and on the status topic. Blocking work (HTTP, TUF, disk) runs in threads; the
alarm path is never awaited by anything here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from appliance.core.vocab import TechnicalKind
from ota.client import Box, Release, choose_release
from ota.confirm import HealthCheck, health_gate
from ota.errors import InstallError, RefusedUpdate
from ota.lifecycle import OtaInput, OtaState, StateFile, step
from ota.policy import DEFAULT_POLICY
from ota.rauc import Installer

__all__ = ["AgentConfig", "AgentHooks", "OtaAgent", "UpdateSource"]

log = logging.getLogger(__name__)


class UpdateSource(Protocol):
    """What the agent needs of the TUF client (ota.client.UpdateClient); blocking calls."""

    def check(self) -> list[Release]: ...

    def download(self, release: Release) -> Path: ...


@dataclass(frozen=True, slots=True)
class AgentConfig:
    compatible: str
    base_version: str  # version of a factory-installed slot (RAUC has no bundle record for it)
    gateway_id: str = ""  # the box's place in staged rollouts (ota/rollout.py)
    # The operator's policy (ota/policy.py, the [ota] keys); defaults written there once.
    poll_interval_s: float = DEFAULT_POLICY.poll_interval_s
    poll_jitter_s: float = DEFAULT_POLICY.poll_jitter_s
    max_deferral_s: float = DEFAULT_POLICY.max_deferral_s
    defer_poll_s: float = 5.0
    health_timeout_s: float = DEFAULT_POLICY.health_timeout_s
    health_poll_s: float = 1.0
    max_boot_attempts: int = DEFAULT_POLICY.max_boot_attempts
    clock_tolerance_s: float = 300.0


@dataclass(slots=True)
class AgentHooks:
    alarm_blocks_reboot: Callable[[], bool]
    health: dict[str, HealthCheck]
    reboot: Callable[[], Awaitable[None]]
    report: Callable[[TechnicalKind, bool, str], None]  # technical event: kind, active, detail
    status: Callable[[dict[str, Any]], None]  # retained status payload
    now: Callable[[], float] = time.time


class OtaAgent:
    def __init__(
        self, cfg: AgentConfig, source: UpdateSource, installer: Installer, state: StateFile, hooks: AgentHooks
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.installer = installer
        self.state_file = state
        self.hooks = hooks
        self.record = state.load()
        self.installed_version = cfg.base_version
        self.slot = ""
        self._clock_bad = False
        self._trusted = False  # TUF metadata refreshed by this process

    # -- bookkeeping -------------------------------------------------------------
    async def _go(self, event: OtaInput, error: str = "") -> None:
        rec = self.record
        rec.state = step(rec.state, event)
        rec.error = error
        await self._save()  # persisted before anything acts on the new state
        detail = f"{rec.state.value} {rec.release_version}".strip() + (f": {error}" if error else "")
        log.info("OTA %s", detail)
        self.hooks.report(TechnicalKind.UPDATE, rec.state not in _FINAL, detail)
        self._status()

    async def _save(self) -> None:
        # fsync in a worker thread: the event loop (and so the alarm path) never waits on disk.
        await asyncio.to_thread(self.state_file.save, self.record)

    def _status(self, **extra: Any) -> None:
        self.hooks.status({**self._status_dict(), "given_up": list(self.record.given_up), **extra})

    def _status_dict(self) -> dict[str, Any]:
        rec = self.record
        return {"state": rec.state.value, "release": rec.release_version, "installed": self.installed_version,
                "slot": self.slot, "error": rec.error}  # fmt: skip

    async def _installed_version(self) -> str:
        slot = await self.installer.booted()
        self.slot = slot.bootname
        self.installed_version = slot.bundle_version or self.cfg.base_version
        return self.installed_version

    # -- the task ------------------------------------------------------------------
    async def run(self) -> None:
        await self.resume()
        while True:
            await self.cycle()
            await asyncio.sleep(self.cfg.poll_interval_s + random.uniform(0, self.cfg.poll_jitter_s))

    async def resume(self) -> None:
        """After a start (boot, crash, power cut): pick up where the record says."""
        await self._installed_version()
        state = self.record.state
        if state in _FINAL or state is OtaState.CHECKING:
            await self._confirm_boot()
        if state is OtaState.CHECKING:
            await self._go(OtaInput.RETRY)
        elif state in (OtaState.REBOOTING, OtaState.HEALTH_CHECK):
            await self._after_boot()
        elif state in (OtaState.DOWNLOADING, OtaState.VERIFIED, OtaState.INSTALLING, OtaState.INSTALLED):
            if state is not OtaState.DOWNLOADING and state is not OtaState.INSTALLED:
                await self._go(OtaInput.RETRY)  # re-verify the file, then install again
            await self._carry_on()
        else:
            self._status()

    async def cycle(self) -> OtaState:
        """One poll; returns the state it ended in."""
        if self.record.state in _FINAL and await self._clock_ok():
            await self._installed_version()
            await self._go(OtaInput.CHECK)
            try:
                releases = await asyncio.to_thread(self.source.check)
                self._trusted = True
            except RefusedUpdate as exc:
                await self._refused(exc)
                return self.record.state
            box = Box(self.cfg.gateway_id, datetime.fromtimestamp(self.hooks.now(), UTC))
            chosen, skipped = choose_release(
                releases, self.cfg.compatible, self.installed_version, frozenset(self.record.given_up), box
            )
            for reason in skipped:
                log.info("OTA skipped %s", reason)
            if chosen is None:
                await self._go(OtaInput.NOTHING_NEW)
                return self.record.state
            rec = self.record
            rec.release_path, rec.release_version, rec.release_length = chosen.path, chosen.version, chosen.length
            rec.from_version = self.installed_version
            rec.deferred_since, rec.deferral_reported = 0.0, False
            await self._go(OtaInput.FOUND)
        await self._carry_on()
        return self.record.state

    async def _carry_on(self) -> None:
        if self.record.state is OtaState.DOWNLOADING and not await self._download():
            return
        if self.record.state is OtaState.VERIFIED and not await self._install():
            return
        if self.record.state is OtaState.INSTALLED:
            await self._reboot_when_safe()

    # -- steps ---------------------------------------------------------------------
    async def _clock_ok(self) -> bool:
        now, rec = self.hooks.now(), self.record
        if now + self.cfg.clock_tolerance_s < rec.time_floor:
            if not self._clock_bad:
                self._clock_bad = True
                self.hooks.report(
                    TechnicalKind.CLOCK_UNSYNCED,
                    True,
                    f"clock is {rec.time_floor - now:.0f} s behind the last trusted time",
                )
            return False  # no metadata or certificate is judged against a clock that went back
        if self._clock_bad:
            self._clock_bad = False
            self.hooks.report(TechnicalKind.CLOCK_UNSYNCED, False, "")
        if now > rec.time_floor:
            rec.time_floor = now
            await self._save()
        return True

    async def _refused(self, exc: RefusedUpdate) -> None:
        self.hooks.report(TechnicalKind.UPDATE_REFUSED, True, f"{exc.reason}: {exc.detail}")
        await self._go(OtaInput.REFUSED, exc.reason)

    async def _download(self) -> bool:
        rec = self.record
        release = Release(rec.release_path, rec.release_version, self.cfg.compatible, "", rec.release_length)
        try:
            if not self._trusted:  # resumed after a restart: refresh the trusted metadata first
                await asyncio.to_thread(self.source.check)
                self._trusted = True
            path = await asyncio.to_thread(self.source.download, release)
        except RefusedUpdate as exc:
            if exc.reason in ("interrupted", "unreachable", "slow_retrieval"):
                log.warning("OTA download of %s paused: %s (resumes next poll)", rec.release_version, exc)
                self.hooks.report(TechnicalKind.UPDATE_REFUSED, True, f"{exc.reason}: {exc.detail}")
                return False  # stays DOWNLOADING: the partial file is resumed next time
            await self._refused(exc)
            return False
        rec.bundle = str(path)
        await self._go(OtaInput.DOWNLOADED)
        return True

    async def _install(self) -> bool:
        await self._go(OtaInput.INSTALL)
        try:
            await self.installer.install(Path(self.record.bundle), self._progress)
        except InstallError as exc:
            # RAUC refusing a bundle (signature, compatible, format) is a property of the
            # release: fetching it again every poll would only cost the fleet's bandwidth.
            self._give_up(self.record.release_version)
            self.hooks.report(TechnicalKind.UPDATE_REFUSED, True, f"install: {exc}")
            await self._go(OtaInput.REFUSED, f"install: {exc}")
            Path(self.record.bundle).unlink(missing_ok=True)
            return False
        await self._go(OtaInput.INSTALLED)
        return True

    def _progress(self, pct: int, text: str) -> None:
        self.hooks.status({**self._status_dict(), "state": "installing", "progress": pct, "step": text})

    async def _reboot_when_safe(self) -> None:
        rec = self.record
        while self.hooks.alarm_blocks_reboot():
            now = self.hooks.now()
            if not rec.deferred_since:
                rec.deferred_since = now
                await self._save()
                self.hooks.report(
                    TechnicalKind.UPDATE_DEFERRED, True, f"{rec.release_version}: reboot waits for the bed's alarms"
                )
            elif now - rec.deferred_since > self.cfg.max_deferral_s and not rec.deferral_reported:
                rec.deferral_reported = True
                await self._save()
                self.hooks.report(
                    TechnicalKind.UPDATE_DEFERRED, True,
                    f"{rec.release_version}: reboot deferred over {self.cfg.max_deferral_s:g} s; not forcing",
                )  # fmt: skip
                self._status(deferred_s=round(now - rec.deferred_since))
            await asyncio.sleep(self.cfg.defer_poll_s)
        if rec.deferred_since:
            self.hooks.report(TechnicalKind.UPDATE_DEFERRED, False, "")
        await self._go(OtaInput.REBOOT)
        await self.hooks.reboot()

    async def _after_boot(self) -> None:
        rec = self.record
        version = await self._installed_version()
        if version != rec.release_version:
            # The bootloader gave up on the new slot (or the box never left the old one).
            self._give_up(rec.release_version)
            await self._go(OtaInput.BOOTED_OLD, f"booted {version}, not {rec.release_version}: bootloader fell back")
            self.hooks.report(TechnicalKind.UPDATE_REFUSED, True, f"rolled back: {rec.release_version} did not boot")
            # Never again: the bootloader must not try that slot when it resets its
            # attempt counters (image/grub.cfg after a run of unconfirmed boots).
            try:
                await self.installer.mark(good=False, slot="other")
            except Exception as exc:  # RAUC's D-Bus errors vary; the rollback stands either way
                why = f"slot of {rec.release_version} not marked bad: {exc}"
                self.hooks.report(TechnicalKind.UPDATE_REFUSED, True, why)
            await self._confirm_boot()
            return
        attempts = rec.boot_attempts.get(version, 0) + 1
        rec.boot_attempts[version] = attempts
        await self._go(OtaInput.BOOTED_NEW)
        if attempts > self.cfg.max_boot_attempts:
            await self._roll_back(f"health gate not reached in {self.cfg.max_boot_attempts} boots")
            return
        problems = await self._health_gate()
        if problems:
            await self._roll_back("health gate failed: " + "; ".join(problems))
            return
        await self.installer.mark(good=True)
        await self._go(OtaInput.HEALTHY)

    async def _confirm_boot(self) -> None:
        """Every healthy start confirms the slot it runs from (mark-good), so the
        bootloader's attempt counter never runs out on a slot that works; an unhealthy
        start outside an update is reported, not rolled back (the other slot may be older
        or empty)."""
        problems = await self._health_gate()
        if problems:
            self.hooks.report(TechnicalKind.UPDATE_REFUSED, True, "running slot not confirmed: " + "; ".join(problems))
            return
        await self.installer.mark(good=True)

    async def _health_gate(self) -> list[str]:
        return await health_gate(self.hooks.health, self.cfg.health_timeout_s, self.cfg.health_poll_s)

    def _give_up(self, version: str) -> None:
        if version and version not in self.record.given_up:
            self.record.given_up.append(version)

    async def _roll_back(self, why: str) -> None:
        self._give_up(self.record.release_version)
        await self.installer.mark(good=False)
        self.hooks.report(TechnicalKind.UPDATE_REFUSED, True, f"rolled back {self.record.release_version}: {why}")
        await self._go(OtaInput.UNHEALTHY, why)
        await self.hooks.reboot()  # into the previous slot


_FINAL = (OtaState.IDLE, OtaState.COMMITTED, OtaState.ROLLED_BACK, OtaState.FAILED)
