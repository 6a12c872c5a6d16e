"""The whole update path with real parts: bundles built and signed with `rauc bundle`,
published as TUF targets, served by nginx with client certificates, fetched by the
agent, installed by `rauc service` over a private D-Bus into loop-device slots, booted
through a boot-counting bootloader model, health-gated and committed or rolled back."""

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.rauc_bench import BOOT_ATTEMPTS, RaucSystem, build_bundle
from ota.agent import AgentConfig, AgentHooks, OtaAgent
from ota.lifecycle import OtaState, StateFile
from ota.pki import make_signing_pki
from ota.rauc import RaucCli, RaucDbus
from ota.repo import FleetRepo
from tests.ota.conftest import COMPATIBLE, HOST_FORMAT, make_client

pytestmark = pytest.mark.integration
CFG = AgentConfig(COMPATIBLE, "1.0.0", health_timeout_s=1.0, health_poll_s=0.05)


@pytest.fixture
def rauc(tmp_path: Path, fleet: FleetRepo) -> Iterator[RaucSystem]:
    system = RaucSystem(tmp_path / "rauc", COMPATIBLE, fleet.fleet / "rauc" / "ca.pem")
    system.setup()
    yield system
    system.teardown()


def signed_bundle(tmp_path: Path, fleet: FleetRepo, version: str, *, pki: Path | None = None, compatible=COMPATIBLE):
    pki = pki or fleet.fleet / "rauc"
    return build_bundle(
        tmp_path / f"bedside-{version}.raucb", compatible=compatible, version=version,
        cert=pki / "signing.pem", key=pki / "signing.key", keyring=pki / "ca.pem", bundle_format=HOST_FORMAT,
    )  # fmt: skip


class Box:
    def __init__(self, tmp_path, server, pki, rauc: RaucSystem, healthy=True):
        self.tmp, self.server, self.pki, self.rauc = tmp_path, server, pki, rauc
        self.healthy = healthy
        self.events: list[tuple[str, bool, str]] = []
        self.statuses: list[dict[str, Any]] = []

    def agent(self) -> OtaAgent:
        async def reboot():
            await asyncio.to_thread(self.rauc.boot)

        hooks = AgentHooks(
            alarm_blocks_reboot=lambda: False,
            health={"gateway": lambda: (self.healthy, "ready" if self.healthy else "alarm self-test failed")},
            reboot=reboot,
            report=lambda kind, active, detail: self.events.append((kind, active, detail)),
            status=self.statuses.append,
        )
        source = make_client(self.tmp / "box", self.server.url, self.pki)
        return OtaAgent(CFG, source, RaucDbus(self.rauc.address), StateFile(self.tmp / "box" / "ota.json"), hooks)

    def state(self) -> OtaState:
        return StateFile(self.tmp / "box" / "ota.json").load().state


async def test_signed_bundle_passes_rauc_info_with_the_keyring_only(tmp_path, fleet):
    bundle = signed_bundle(tmp_path, fleet, "1.1.0")
    ok = subprocess.run(["rauc", "info", f"--keyring={fleet.fleet / 'rauc' / 'ca.pem'}", str(bundle)],
                        capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"^Version:\s+'1\.1\.0'$", ok.stdout, re.M)  # RAUC 1.8 and 1.13 align differently
    make_signing_pki(tmp_path / "other", "rogue")
    bad = subprocess.run(["rauc", "info", f"--keyring={tmp_path / 'other' / 'ca.pem'}", str(bundle)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert bad.returncode != 0


async def test_full_update_installs_boots_slot_b_passes_the_gate_and_commits(
    tmp_path, fleet, server, pki, box_dir, rauc
):
    fleet.publish(signed_bundle(tmp_path, fleet, "1.1.0"), "1.1.0", COMPATIBLE)
    box = Box(tmp_path, server, pki, rauc)
    agent = box.agent()
    await agent.resume()
    assert await agent.cycle() is OtaState.REBOOTING
    assert rauc.booted == "B"
    assert rauc.slot_release("B") == "1.1.0"
    after = box.agent()  # the gateway starting in the new slot
    await after.resume()
    assert box.state() is OtaState.COMMITTED
    assert (await RaucDbus(rauc.address).booted()).bundle_version == "1.1.0"
    assert rauc.boot() == "B"  # marked good: it stays the slot that boots
    assert box.statuses[-1]["installed"] == "1.1.0"


async def test_bundle_signed_by_another_ca_is_refused_by_rauc_with_nothing_installed(
    tmp_path, fleet, server, pki, box_dir, rauc
):
    make_signing_pki(tmp_path / "rogue", "rogue")
    fleet.add_release(signed_bundle(tmp_path, fleet, "1.1.0", pki=tmp_path / "rogue"), "1.1.0", COMPATIBLE)
    box = Box(tmp_path, server, pki, rauc)
    agent = box.agent()
    await agent.resume()
    assert await agent.cycle() is OtaState.FAILED
    record = StateFile(tmp_path / "box" / "ota.json").load()
    assert record.error.startswith("install: RAUC refused")
    assert "signature" in record.error.lower() or "verif" in record.error.lower()
    assert rauc.slot_release("B") == ""
    assert await RaucDbus(rauc.address).primary() == "A"
    assert record.given_up == ["1.1.0"]  # not fetched again on the next poll
    assert await agent.cycle() is OtaState.IDLE


async def test_wrong_compatible_in_the_bundle_is_refused_by_rauc(tmp_path, fleet, server, pki, box_dir, rauc):
    # The fleet's metadata says it is for us, the bundle itself says otherwise: RAUC decides.
    fleet.add_release(signed_bundle(tmp_path, fleet, "1.1.0", compatible="other-board"), "1.1.0", COMPATIBLE)
    box = Box(tmp_path, server, pki, rauc)
    agent = box.agent()
    await agent.resume()
    assert await agent.cycle() is OtaState.FAILED
    assert "compatible" in StateFile(tmp_path / "box" / "ota.json").load().error.lower()
    assert rauc.slot_release("B") == ""


async def test_unhealthy_release_is_marked_bad_and_the_box_boots_the_old_slot(
    tmp_path, fleet, server, pki, box_dir, rauc
):
    fleet.publish(signed_bundle(tmp_path, fleet, "1.1.0"), "1.1.0", COMPATIBLE)
    box = Box(tmp_path, server, pki, rauc, healthy=False)
    agent = box.agent()
    await agent.resume()
    await agent.cycle()
    assert rauc.booted == "B"
    await box.agent().resume()  # gate fails -> mark-bad -> reboot
    assert box.state() is OtaState.ROLLED_BACK
    assert rauc.booted == "A"
    assert rauc.boot() == "A"  # and stays there


async def test_a_slot_that_never_comes_up_is_abandoned_by_the_bootloader(tmp_path, fleet, server, pki, box_dir, rauc):
    fleet.publish(signed_bundle(tmp_path, fleet, "1.1.0"), "1.1.0", COMPATIBLE)
    box = Box(tmp_path, server, pki, rauc)
    agent = box.agent()
    await agent.resume()
    await agent.cycle()
    for _ in range(BOOT_ATTEMPTS - 1):  # the new system dies before the gateway starts
        assert rauc.boot() == "B"
    assert rauc.boot() == "A"  # attempts used up: the bootloader falls back
    await box.agent().resume()
    record = StateFile(tmp_path / "box" / "ota.json").load()
    assert record.state is OtaState.ROLLED_BACK and record.given_up == ["1.1.0"]
    assert await box.agent().cycle() is OtaState.IDLE  # and never tries it again


async def test_cli_fallback_installs_and_marks(tmp_path, fleet, rauc):
    bundle = signed_bundle(tmp_path, fleet, "1.2.0")
    cli = RaucCli(env=rauc.env())
    await cli.install(bundle)
    assert await cli.primary() == "B"
    assert rauc.boot() == "B"
    await cli.mark(good=True)
    assert (await cli.booted()).bootname == "B"
