"""The box's health as the OTA agent judges it, and the running slot's confirmation.

Light on purpose (no TUF client, D-Bus loaded only when used): `bedside run` loads it on
every box booted from a RAUC slot, with or without [ota]. GRUB counts boot attempts per
slot and boots one again only once it was marked good; without an update agent
something must still mark the running slot good at each healthy start, or the first
reboot or power cut finds no bootable slot (found by the HIL power-cut scenario).
The gateway and its settings are seen through small protocols (appliance.config.Config
and appliance.gateway.Gateway satisfy them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from appliance.core.model import Record, TechnicalEvent
from appliance.core.tls import TlsPaths
from appliance.core.vocab import TechnicalKind
from ota.policy import UpdatePolicy

if TYPE_CHECKING:
    from ota.rauc import Installer

__all__ = [
    "GatewayLike", "HealthCheck", "OtaSettings", "Settings", "attach_confirm", "booted_by_rauc",
    "confirm_running_slot", "health_checks", "health_gate",
]  # fmt: skip

HealthCheck = Callable[[], tuple[bool, str]]


class OtaSettings(TlsPaths, Protocol):
    """The `[ota]` settings the agent reads (its own TLS files: `TlsPaths`'s three)."""

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


def health_checks(gw: GatewayLike, ota: OtaSettings) -> dict[str, HealthCheck]:
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


async def health_gate(health: dict[str, HealthCheck], timeout_s: float, poll_s: float) -> list[str]:
    """The checks' problems once all pass (none) or the time is up (what still fails)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        results = {name: check() for name, check in health.items()}
        problems = [f"{name}: {detail}" for name, (ok, detail) in results.items() if not ok]
        if not problems or loop.time() >= deadline:
            return problems
        await asyncio.sleep(poll_s)


def booted_by_rauc(cmdline: Path = Path("/proc/cmdline")) -> bool:
    """The box booted a RAUC slot (the bootloader's `rauc.slot=` on the kernel command line)."""
    try:
        return "rauc.slot=" in cmdline.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


async def confirm_running_slot(
    health: dict[str, HealthCheck], installer: Installer, report: Callable[[TechnicalKind, bool, str], None],
    timeout_s: float, *, poll_s: float = 1.0, retry_s: float = 60.0,
) -> None:  # fmt: skip
    """A box without [ota] still boots RAUC slots with boot counting: its start confirms
    the running slot (mark-good) as soon as the gateway is READY, or the bootloader's
    attempt counter stays spent and the next reboot or power cut finds no bootable slot.
    Without an update there is no other slot to go back to, so an unhealthy start is
    reported, never a reason to leave the slot unconfirmed. RAUC unreachable: reported
    once, retried every `retry_s` (a task that raised would be restarted as a crash)."""
    ready = {name: check for name, check in health.items() if name == "ready"}
    await health_gate(ready, timeout_s, poll_s)
    failed = False
    while True:
        try:
            await installer.mark(good=True)
            break
        except Exception as exc:  # D-Bus or RAUC refused: keep the alarm path running, try again
            if not failed:
                report(TechnicalKind.UPDATE_REFUSED, True, f"running slot not confirmed: {exc}")
                failed = True
            await asyncio.sleep(retry_s)
    if failed:
        report(TechnicalKind.UPDATE_REFUSED, False, "running slot confirmed")
    problems = await health_gate(health, timeout_s, poll_s)
    if problems:
        report(TechnicalKind.UPDATE_REFUSED, True, "running slot confirmed while unhealthy: " + "; ".join(problems))
    await asyncio.Event().wait()  # done for this boot: a task that returns would be restarted


def attach_confirm(gw: GatewayLike, *, cmdline: Path = Path("/proc/cmdline")) -> None:
    """On a box booted from a RAUC slot, a task that confirms it once healthy."""
    if not booted_by_rauc(cmdline):
        return
    from ota.rauc import RaucCli, RaucDbus

    cfg = gw.config.ota
    installer: Installer = RaucCli() if cfg.rauc == "cli" else RaucDbus(cfg.rauc_bus_address or None)

    def report(kind: TechnicalKind, active: bool, detail: str) -> None:
        gw.publish(TechnicalEvent("ota", kind, active=active, detail=detail))

    health = health_checks(gw, cfg)
    timeout_s = cfg.policy.health_timeout_s
    gw.tasks["slot-confirm"] = lambda: confirm_running_slot(health, installer, report, timeout_s)
