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
from typing import Any, Final

from appliance.core.model import TechnicalEvent
from appliance.core.tls import resolve_tls
from appliance.core.vocab import AlarmState, Priority, TechnicalKind
from ota.agent import AgentConfig, AgentHooks, OtaAgent
from ota.client import UpdateClient
from ota.confirm import (
    GatewayLike,
    OtaSettings,
    Settings,
    attach_confirm,
    booted_by_rauc,
    confirm_running_slot,
    health_checks,
)
from ota.fetch import MtlsFetcher, client_context
from ota.lifecycle import StateFile
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


def blocking_alarm(alarms: list[dict[str, Any]]) -> bool:
    """A high or medium alarm that is not idle: pending (its delay running), active,
    audio-paused, acknowledged or latched. Only INACTIVE lets a reboot through; a state
    this version does not know blocks, which errs towards the bed."""
    return any(a["priority"] in _BLOCKING_PRIORITIES and a["state"] != AlarmState.INACTIVE for a in alarms)


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
        health=health_checks(gw, cfg),
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


def attach(gw: GatewayLike, *, cmdline: Path = Path("/proc/cmdline")) -> None:
    """Run the OTA agent under the gateway's supervisor (when [ota] server_url is set);
    without it, on a box booted from a RAUC slot, only confirm that slot when healthy."""
    if gw.config.ota.server_url:
        agent = agent_for(gw)
        gw.tasks["ota"] = agent.run
    else:
        attach_confirm(gw, cmdline=cmdline)
