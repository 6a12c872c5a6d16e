"""A box without [ota] still boots RAUC slots with boot counting: a healthy gateway
confirms the slot it runs from (mark-good) through the real RAUC service, else the next
reboot or power cut finds no bootable slot (seen on the bench with the image's default
config). Off a RAUC boot (no `rauc.slot=` on the kernel command line) nothing is done."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.config import parse_config
from appliance.core.model import Record, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from appliance.gateway import Gateway
from hil.rauc_bench import RaucSystem
from ota.confirm import HealthCheck, booted_by_rauc, confirm_running_slot
from ota.rauc import MemoryRauc
from ota.repo import FleetRepo
from ota.service import attach
from rules.outputs import MemoryOutput
from tests.integration.helpers import until
from tests.ota.conftest import COMPATIBLE

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, bus: str) -> str:
    return f"""
[gateway]
bed_id = "ICU-1"
registry_path = "{tmp_path / "registry.json"}"
[ota]
rauc_bus_address = "{bus}"
"""


def test_booted_by_rauc_reads_the_kernel_command_line(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("root=PARTLABEL=rootfs_a ro rauc.slot=A quiet\n")
    assert booted_by_rauc(cmdline)
    cmdline.write_text("root=/dev/sda1 ro quiet\n")
    assert not booted_by_rauc(cmdline)
    assert not booted_by_rauc(tmp_path / "missing")


async def test_a_healthy_gateway_without_ota_confirms_its_slot(tmp_path: Path, fleet: FleetRepo) -> None:
    rauc = RaucSystem(tmp_path / "rauc", COMPATIBLE, fleet.fleet / "rauc" / "ca.pem")
    rauc.setup()
    try:
        (rauc.state / "attempts.A").write_text("1\n")  # a boot counted, not confirmed yet
        (rauc.state / "state.A").write_text("bad\n")
        cmdline = tmp_path / "cmdline"
        gateway = Gateway(parse_config(_config(tmp_path, rauc.address), "g.toml"), outputs=[MemoryOutput("m")])
        cmdline.write_text("ro rauc.slot=B\n")
        attach(gateway, cmdline=tmp_path / "none")
        assert "slot-confirm" not in gateway.tasks and "ota" not in gateway.tasks  # not a RAUC boot
        cmdline.write_text("root=PARTLABEL=rootfs_a ro rauc.slot=A quiet\n")
        attach(gateway, cmdline=cmdline)
        assert "slot-confirm" in gateway.tasks and "ota" not in gateway.tasks
        seen: list[Record] = []
        gateway.subscribers.append(seen.append)
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: (rauc.state / "state.A").read_text().strip() == "good", 30)
            assert int((rauc.state / "attempts.A").read_text()) > 1  # a full budget again
            await asyncio.sleep(0.5)
            crashed = [r for r in seen if isinstance(r, TechnicalEvent) and "slot-confirm" in r.detail]
            assert crashed == []  # done for this boot, not a task that returned and restarts
        finally:
            stop.set()
            assert await run
    finally:
        rauc.teardown()


async def test_an_unhealthy_start_is_confirmed_once_ready_and_reported() -> None:
    # No update, so no other slot to go back to: leaving this one unconfirmed would only
    # make the next reboot or power cut find no bootable slot.
    rauc = MemoryRauc(good={"A": False, "B": False})
    seen: list[tuple[TechnicalKind, bool, str]] = []
    ready = [False]
    checks: dict[str, HealthCheck] = {"ready": lambda: (ready[0], "READY"), "store": lambda: (False, "store failing")}
    confirm = confirm_running_slot(checks, rauc, lambda k, a, d: seen.append((k, a, d)), timeout_s=5, poll_s=0.05)
    task = asyncio.create_task(confirm)
    await asyncio.sleep(0.3)
    assert rauc.good["A"] is False  # not before READY
    ready[0] = True
    await until(lambda: bool(seen), 10)
    assert rauc.good["A"] is True
    assert seen == [
        (TechnicalKind.UPDATE_REFUSED, True, "running slot confirmed while unhealthy: store: store failing")
    ]
    assert not task.done()  # it stays (a returning task would be restarted by the supervisor)
    task.cancel()


class _Unreachable(MemoryRauc):
    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    async def mark(self, good: bool, slot: str = "booted") -> None:
        self.tries += 1
        if self.tries < 3:
            raise OSError("org.freedesktop.DBus.Error.ServiceUnknown")
        await super().mark(good)


async def test_rauc_unreachable_is_reported_once_and_retried() -> None:
    rauc = _Unreachable()
    rauc.good["A"] = False
    seen: list[tuple[TechnicalKind, bool, str]] = []
    checks: dict[str, HealthCheck] = {"ready": lambda: (True, "READY")}
    confirm = confirm_running_slot(checks, rauc, lambda k, a, d: seen.append((k, a, d)), 5, poll_s=0.05, retry_s=0.05)
    task = asyncio.create_task(confirm)
    await until(lambda: rauc.good["A"], 10)
    await until(lambda: len(seen) == 2, 5)
    assert seen[0][:2] == (TechnicalKind.UPDATE_REFUSED, True) and "ServiceUnknown" in seen[0][2]
    assert seen[1] == (TechnicalKind.UPDATE_REFUSED, False, "running slot confirmed")
    assert rauc.tries == 3 and not task.done()
    task.cancel()
