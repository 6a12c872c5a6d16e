"""The agent's lifecycle with in-memory twins: happy path, health gate, boot loops,
deferral while an alarm is active, the clock floor, and a power cut at every state."""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ota.agent import AgentConfig, AgentHooks, OtaAgent
from ota.client import Release
from ota.errors import RefusedUpdate
from ota.lifecycle import TRANSITIONS, OtaInput, OtaRecord, OtaState, StateFile, step
from ota.rauc import MemoryRauc
from tests.integration.helpers import until

COMPAT = "bedside-test"
CFG = AgentConfig(COMPAT, "1.0.0", poll_interval_s=0, poll_jitter_s=0, defer_poll_s=0.01, health_timeout_s=0.2,
                  health_poll_s=0.01, max_deferral_s=0.05)  # fmt: skip


@dataclass
class FakeSource:
    dir: Path
    releases: list[Release] = field(default_factory=list)
    refuse: RefusedUpdate | None = None
    checks: int = 0
    downloads: int = 0

    def add(self, version, compatible=COMPAT, min_version=""):
        self.releases.append(Release(f"{compatible}/{version}/b.raucb", version, compatible, min_version, 10))

    def check(self):
        self.checks += 1
        if self.refuse:
            raise self.refuse
        return list(self.releases)

    def download(self, release):
        self.downloads += 1
        path = self.dir / f"{release.version}.raucb"
        path.write_text(release.version)
        return path


@dataclass
class Box:
    """One box: its RAUC twin survives reboots, the agent process does not."""

    tmp: Path
    rauc: MemoryRauc = field(default_factory=MemoryRauc)
    alarm: bool = False
    healthy: bool = True
    events: list[tuple[str, bool, str]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    reboots: int = 0
    now: float = 1_000_000.0

    def __post_init__(self):
        self.source = FakeSource(self.tmp)

    def agent(self, cfg=CFG):
        async def reboot():
            self.reboots += 1
            self.rauc.reboot()

        hooks = AgentHooks(
            alarm_blocks_reboot=lambda: self.alarm,
            health={"gateway": lambda: (self.healthy, "ready" if self.healthy else "not ready")},
            reboot=reboot,
            report=lambda kind, active, detail: self.events.append((kind, active, detail)),
            status=self.statuses.append,
            now=lambda: self.now,
        )
        return OtaAgent(cfg, self.source, self.rauc, StateFile(self.tmp / "ota.json"), hooks)

    def record(self):
        return StateFile(self.tmp / "ota.json").load()

    def kinds(self, kind):
        return [e for e in self.events if e[0] == kind]


async def boot(box, cfg=CFG):
    """A new agent process after a (re)boot."""
    agent = box.agent(cfg)
    await agent.resume()
    return agent


async def test_happy_path_installs_reboots_passes_the_gate_and_commits(tmp_path):
    box = Box(tmp_path)
    box.source.add("1.1.0")
    agent = await boot(box)
    assert await agent.cycle() is OtaState.REBOOTING
    assert box.reboots == 1 and box.rauc.booted_slot == "B"
    await boot(box)
    assert box.record().state is OtaState.COMMITTED
    assert box.rauc.good["B"]
    assert box.statuses[-1]["state"] == "committed" and box.statuses[-1]["installed"] == "1.1.0"
    states = [d.split()[0] for k, _, d in box.events if k == "update"]
    assert states == ["checking", "downloading", "verified", "installing", "installed", "rebooting",
                      "health_check", "committed"]  # fmt: skip
    agent = await boot(box)
    assert await agent.cycle() is OtaState.IDLE  # nothing newer than 1.1.0


async def test_unhealthy_new_slot_is_marked_bad_rolled_back_and_given_up(tmp_path):
    box = Box(tmp_path)
    box.source.add("1.1.0")
    await (await boot(box)).cycle()
    box.healthy = False
    await boot(box)
    rec = box.record()
    assert rec.state is OtaState.ROLLED_BACK and rec.given_up == ["1.1.0"]
    assert box.rauc.booted_slot == "A" and not box.rauc.good["B"]
    assert any("health gate failed" in d for _, _, d in box.kinds("update_refused"))
    box.healthy = True
    agent = await boot(box)
    assert await agent.cycle() is OtaState.IDLE  # never flips back to the release that failed
    assert box.reboots == 2


async def test_a_crash_loop_during_the_gate_gives_up_after_the_attempt_limit(tmp_path):
    box = Box(tmp_path)
    box.source.add("1.1.0")
    await (await boot(box)).cycle()
    cfg = AgentConfig(COMPAT, "1.0.0", health_timeout_s=10, health_poll_s=0.01, max_boot_attempts=2)
    for _ in range(2):  # the gateway dies during the gate: the agent never finishes it
        box.healthy = False
        task = asyncio.create_task(boot(box, cfg))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert box.record().state is OtaState.HEALTH_CHECK
    box.healthy = True
    await boot(box, cfg)  # third boot: over the limit even though it would now pass
    rec = box.record()
    assert rec.state is OtaState.ROLLED_BACK and "1.1.0" in rec.given_up
    assert box.rauc.booted_slot == "A"


async def test_bootloader_fallback_is_recognised_and_reported(tmp_path):
    box = Box(tmp_path)
    box.source.add("1.1.0")
    await (await boot(box)).cycle()
    box.rauc.booted_slot = "A"  # the new slot never came up; the bootloader went back
    await boot(box)
    rec = box.record()
    assert rec.state is OtaState.ROLLED_BACK and rec.given_up == ["1.1.0"]
    assert "bootloader fell back" in rec.error
    # The slot it fell back from is marked bad, so a bootloader that resets its attempt
    # counters (image/grub.cfg) never boots the given-up release again; A is confirmed.
    assert box.rauc.good == {"A": True, "B": False} and box.rauc.primary_slot == "A"


async def test_reboot_waits_while_an_alarm_is_active_and_reports_long_deferral(tmp_path):
    box = Box(tmp_path)
    box.source.add("1.1.0")
    box.alarm = True
    agent = await boot(box)
    task = asyncio.create_task(agent.cycle())
    # Wait for what the test means (the agent is deferring), not a fixed time: the
    # download and install run in threads and take longer on a loaded machine.
    await until(lambda: box.kinds("update_deferred"), timeout_s=30)
    assert box.record().state is OtaState.INSTALLED and box.reboots == 0
    box.now += 10  # past max_deferral_s: told to the fleet, not forced
    await until(lambda: any("not forcing" in d for _, _, d in box.kinds("update_deferred")), timeout_s=30)
    assert box.reboots == 0
    assert any("not forcing" in d for _, _, d in box.kinds("update_deferred"))
    box.alarm = False
    assert await asyncio.wait_for(task, timeout=30) is OtaState.REBOOTING
    assert box.reboots == 1
    assert box.kinds("update_deferred")[-1][1] is False


async def test_refusals_are_reported_with_their_reason_and_install_nothing(tmp_path):
    box = Box(tmp_path)
    box.source.add("1.1.0")
    box.source.refuse = RefusedUpdate("freeze", "timestamp expired")
    agent = await boot(box)
    assert await agent.cycle() is OtaState.FAILED
    assert box.record().error == "freeze"
    assert box.kinds("update_refused")[-1][2] == "freeze: timestamp expired"
    assert box.rauc.installs == [] and box.rauc.primary_slot == "A"
    box.source.refuse = None
    box.rauc.fail = "Failed verifying signature"
    assert await agent.cycle() is OtaState.FAILED
    assert "install: Failed verifying signature" in box.record().error
    assert box.rauc.primary_slot == "A" and box.reboots == 0


async def test_a_clock_behind_the_time_floor_is_not_trusted(tmp_path):
    box = Box(tmp_path)
    box.source.add("1.1.0")
    agent = await boot(box)
    box.source.refuse = RefusedUpdate("unreachable", "x")
    await agent.cycle()  # records the time floor
    box.now -= 86_400  # no RTC: the box booted with a clock a day behind
    box.source.refuse = None
    checks = box.source.checks
    assert await agent.cycle() is OtaState.FAILED  # nothing was attempted
    assert box.source.checks == checks
    assert box.kinds("clock_unsynced") == [("clock_unsynced", True, "clock is 86400 s behind the last trusted time")]
    box.now += 86_400
    await agent.cycle()
    assert ("clock_unsynced", False, "") in box.events


@pytest.mark.parametrize("cut_at", [s for s in OtaState if s is not OtaState.IDLE])
async def test_a_power_cut_at_every_state_resumes_or_rolls_back(tmp_path, cut_at, monkeypatch):
    """Cut the power right after the record says `cut_at`; the bootloader boots its primary;
    the agent finds the record and finishes. The box ends committed on 1.1.0, or rolled back
    to 1.0.0 where that was the path (an unhealthy release), never half-done."""
    box = Box(tmp_path)
    box.source.add("1.1.0")
    box.healthy = cut_at is not OtaState.ROLLED_BACK  # reach that state through a failed gate
    if cut_at is OtaState.FAILED:
        box.source.refuse = RefusedUpdate("unreachable", "server down")

    class PowerCut(Exception):
        pass

    armed = [True]
    real_save = StateFile.save

    def save(self, record):
        real_save(self, record)
        if armed[0] and record.state is cut_at:
            armed[0] = False  # one cut; the power stays on afterwards
            raise PowerCut

    monkeypatch.setattr(StateFile, "save", save)
    agent = box.agent()
    cut = False
    try:
        await agent.resume()
        await agent.cycle()
        await box.agent().resume()  # the boot after the install (no cut yet)
    except PowerCut:
        cut = True
        box.rauc.reboot()  # power back: the bootloader boots the primary slot
    assert cut, f"never reached {cut_at.value}"
    box.source.refuse = None
    for _ in range(4):  # boot and let the agent finish whatever it finds
        agent = await boot(box)
        if box.record().state in (OtaState.COMMITTED, OtaState.ROLLED_BACK):
            break
        await agent.cycle()
    final = box.record()
    expected = OtaState.COMMITTED if box.healthy else OtaState.ROLLED_BACK
    assert final.state is expected, final
    assert box.rauc.booted_slot == ("B" if box.healthy else "A")
    assert box.rauc.primary_slot == box.rauc.booted_slot
    assert box.rauc.good[box.rauc.booted_slot] or box.rauc.booted_slot == "A"


def test_transition_table_covers_every_state_and_refuses_the_rest():
    targets = set(TRANSITIONS.values())
    assert targets | {OtaState.IDLE} == set(OtaState)
    with pytest.raises(ValueError, match="no transition"):
        step(OtaState.IDLE, OtaInput.INSTALLED)


def test_state_file_round_trips_and_survives_garbage(tmp_path):
    sf = StateFile(tmp_path / "s.json")
    rec = OtaRecord(state=OtaState.INSTALLED, release_version="1.2.0", given_up=["1.1.0"], boot_attempts={"1.2.0": 1})
    sf.save(rec)
    assert sf.load() == rec
    (tmp_path / "s.json").write_text("{not json")
    assert sf.load().state is OtaState.IDLE


async def test_every_healthy_start_confirms_the_running_slot(tmp_path):
    box = Box(tmp_path)
    box.rauc.good["A"] = False  # the bootloader's try counter is running on A
    await boot(box)
    assert box.rauc.good["A"]  # confirmed: the counter never runs out on a working slot
    box.rauc.good["A"] = False
    box.healthy = False
    await boot(box)
    assert not box.rauc.good["A"] and box.rauc.primary_slot == "A"  # reported, never flipped
    assert any("running slot not confirmed" in d for _, _, d in box.kinds("update_refused"))
