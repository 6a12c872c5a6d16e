"""The OTA agent as a task of the running gateway: configuration, TLS files, hooks.

The gateway and its settings are seen through small protocols (ota imports nothing
of appliance but appliance.core; appliance.config.Config satisfies `Settings`): its
alarms decide whether a reboot may happen now, its readiness, alarm self-test, store
and uplink make the health gate, its `publish` carries the technical events, and the
uplink's retained `status/ota` topic the lifecycle state. Reboots go through systemd.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, Protocol

from appliance.core.model import Record, TechnicalEvent
from appliance.core.tls import TlsPaths, resolve_tls
from appliance.core.vocab import AlarmState, Priority, TechnicalKind
from ota.agent import AgentConfig, AgentHooks, HealthCheck, OtaAgent, health_gate
from ota.client import UpdateClient
from ota.fetch import MtlsFetcher, client_context
from ota.lifecycle import StateFile
from ota.policy import UpdatePolicy
from ota.rauc import Installer, RaucCli, RaucDbus

__all__ = [
    "GatewayLike",
    "OtaSettings",
    "Settings",
    "agent_for",
    "attach",
    "blocking_alarm",
    "booted_by_rauc",
    "confirm_running_slot",
]

# Alarms at these priorities hold a reboot back; a low one does not.
_BLOCKING_PRIORITIES: Final = frozenset({Priority.HIGH, Priority.MEDIUM})


class OtaSettings(Protocol):
    """The `[ota]` settings the agent reads."""

    @property
    def server_url(self) -> str: ...

    @property
    def compatible(self) -> str: ...

    @property
    def base_version(self) -> str: ...

    @property
    def data_dir(self) -> str: ...

    @property
    def root_path(self) -> str: ...

    @property
    def policy(self) -> UpdatePolicy: ...

    @property
    def rauc(self) -> str: ...

    @property
    def rauc_bus_address(self) -> str: ...

    @property
    def require_uplink(self) -> bool: ...

    @property
    def reboot_request_path(self) -> str: ...

    @property
    def ca_path(self) -> str: ...

    @property
    def cert_path(self) -> str: ...

    @property
    def key_path(self) -> str: ...


class Settings(Protocol):
    @property
    def ota(self) -> OtaSettings: ...

    @property
    def uplink(self) -> TlsPaths: ...  # the fleet connection's default TLS files


class _Alarms(Protocol):
    def alarms(self) -> list[dict[str, Any]]: ...


class _Queue(Protocol):
    @property
    def last_commit_ok(self) -> bool | None: ...


class _Uplink(Protocol):
    @property
    def connected(self) -> bool: ...

    def set_status(self, name: str, payload: dict[str, Any]) -> None: ...


class GatewayLike(Protocol):
    tasks: dict[str, Callable[[], Coroutine[Any, Any, None]]]

    @property
    def config(self) -> Settings: ...

    @property
    def ready(self) -> bool: ...

    @property
    def self_test_ok(self) -> bool | None: ...

    @property
    def alarms(self) -> _Alarms: ...

    @property
    def queue(self) -> _Queue | None: ...

    @property
    def uplink(self) -> _Uplink | None: ...

    def publish(self, record: Record) -> None: ...


def blocking_alarm(alarms: list[dict[str, Any]]) -> bool:
    """A high or medium alarm that is not idle: pending (its delay running), active,
    audio-paused, acknowledged or latched. Only INACTIVE lets a reboot through; a state
    this version does not know blocks, which errs towards the bed."""
    return any(a["priority"] in _BLOCKING_PRIORITIES and a["state"] != AlarmState.INACTIVE for a in alarms)


def _health(gw: GatewayLike, ota: OtaSettings) -> dict[str, HealthCheck]:
    def ready() -> tuple[bool, str]:
        return gw.ready, "gateway READY" if gw.ready else "gateway not READY"

    def alarm_outputs() -> tuple[bool, str]:
        return bool(gw.self_test_ok), "alarm outputs self-tested" if gw.self_test_ok else "alarm self-test failed"

    def store() -> tuple[bool, str]:
        if gw.queue is None:
            return True, "no store configured"
        ok = gw.queue.last_commit_ok is True
        return ok, "store writable" if ok else "store has not committed"

    def uplink() -> tuple[bool, str]:
        if gw.uplink is None or not ota.require_uplink:
            return True, "uplink not required (offline by policy)"
        return gw.uplink.connected, "uplink connected" if gw.uplink.connected else "uplink not connected"

    return {"ready": ready, "alarm_outputs": alarm_outputs, "store": store, "uplink": uplink}


async def _systemd_reboot() -> None:
    proc = await asyncio.create_subprocess_exec("systemctl", "reboot")
    await proc.wait()
    await asyncio.sleep(3600)  # the process ends with the system


def _request_reboot(path: Path) -> Callable[[], Coroutine[Any, Any, None]]:
    async def reboot() -> None:
        # The gateway runs unprivileged: a root path unit (bedside-reboot.path) reboots.
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("ota\n")
        await asyncio.sleep(3600)  # the process ends with the system

    return reboot


def agent_for(gw: GatewayLike, reboot: Callable[[], Coroutine[Any, Any, None]] | None = None) -> OtaAgent:
    cfg, up = gw.config.ota, gw.config.uplink
    if reboot is None:
        reboot = _request_reboot(Path(cfg.reboot_request_path)) if cfg.reboot_request_path else _systemd_reboot
    data = Path(cfg.data_dir)
    tuf = data / "tuf"
    tuf.mkdir(parents=True, exist_ok=True)
    if cfg.root_path and not (tuf / "root.json").exists():
        shutil.copyfile(cfg.root_path, tuf / "root.json")  # the image's trusted root seeds the box once
    tls = resolve_tls("ota", (cfg.ca_path, cfg.cert_path, cfg.key_path), up)  # own, else the uplink's
    ctx = client_context(tls.ca.path, tls.cert.path, tls.key.path)
    source = UpdateClient(tuf, cfg.server_url, MtlsFetcher(ctx), data / "downloads")
    installer: Installer = RaucCli() if cfg.rauc == "cli" else RaucDbus(cfg.rauc_bus_address or None)

    def report(kind: TechnicalKind, active: bool, detail: str) -> None:
        gw.publish(TechnicalEvent("ota", kind, active=active, detail=detail))

    def status(payload: dict[str, Any]) -> None:
        if gw.uplink is not None:
            gw.uplink.set_status("ota", payload)

    hooks = AgentHooks(
        alarm_blocks_reboot=lambda: blocking_alarm(gw.alarms.alarms()),
        health=_health(gw, cfg),
        reboot=reboot,
        report=report,
        status=status,
    )
    # The rollout bucket hashes the id the fleet sees (the status topic's): the uplink's
    # gateway_id, else the bed id (the same fallback as observation ids).
    gateway_id = str(getattr(up, "gateway_id", "") or getattr(getattr(gw.config, "gateway", None), "bed_id", ""))
    agent_cfg = AgentConfig(
        cfg.compatible, cfg.base_version, gateway_id, poll_interval_s=cfg.policy.poll_interval_s,
        poll_jitter_s=cfg.policy.poll_jitter_s, max_deferral_s=cfg.policy.max_deferral_s,
        health_timeout_s=cfg.policy.health_timeout_s, max_boot_attempts=cfg.policy.max_boot_attempts,
    )  # fmt: skip
    return OtaAgent(agent_cfg, source, installer, StateFile(data / "ota.json"), hooks)


def booted_by_rauc(cmdline: Path = Path("/proc/cmdline")) -> bool:
    """The box booted a RAUC slot (the bootloader's `rauc.slot=` on the kernel command line)."""
    try:
        return "rauc.slot=" in cmdline.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


async def confirm_running_slot(
    health: dict[str, HealthCheck], installer: Installer, report: Callable[[TechnicalKind, bool, str], None],
    timeout_s: float, poll_s: float = 1.0,
) -> None:  # fmt: skip
    """A box without [ota] still boots RAUC slots with boot counting: its healthy start
    confirms the running slot (mark-good) as the agent's would, or the bootloader's
    attempt counter runs out and the next reboot or power cut finds no bootable slot.
    Unhealthy: reported, not marked (nothing to roll back to without an update)."""
    problems = await health_gate(health, timeout_s, poll_s)
    if problems:
        report(TechnicalKind.UPDATE_REFUSED, True, "running slot not confirmed: " + "; ".join(problems))
    else:
        await installer.mark(good=True)
    await asyncio.Event().wait()  # done for this boot: a task that returns would be restarted


def attach(gw: GatewayLike, *, cmdline: Path = Path("/proc/cmdline")) -> None:
    """Run the OTA agent under the gateway's supervisor (when [ota] server_url is set);
    without [ota], on a box booted from a RAUC slot, only confirm that slot when healthy."""
    if gw.config.ota.server_url:
        agent = agent_for(gw)
        gw.tasks["ota"] = agent.run
    elif booted_by_rauc(cmdline):
        cfg = gw.config.ota
        installer: Installer = RaucCli() if cfg.rauc == "cli" else RaucDbus(cfg.rauc_bus_address or None)

        def report(kind: TechnicalKind, active: bool, detail: str) -> None:
            gw.publish(TechnicalEvent("ota", kind, active=active, detail=detail))

        health = _health(gw, cfg)
        timeout_s = cfg.policy.health_timeout_s
        gw.tasks["slot-confirm"] = lambda: confirm_running_slot(health, installer, report, timeout_s)
