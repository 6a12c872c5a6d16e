"""Staged rollout: the pure rule, then a simulated fleet — 200 agents, each with its RAUC
twin, in one process — reading one real release list (signed by the fleet, served by
nginx with client certificates, verified by the TUF client) as `bedside ota rollout`
widens and halts it."""

import dataclasses
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from ota.agent import AgentConfig, AgentHooks, OtaAgent
from ota.client import Release
from ota.errors import RefusedUpdate
from ota.lifecycle import OtaState, StateFile
from ota.rauc import MemoryRauc
from ota.repo import FleetRepo
from ota.rollout import RolloutPolicy, bucket, eligible
from tests.ota.conftest import COMPATIBLE, make_client

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
FLEET_SIZE = 200


def test_buckets_are_stable_spread_and_widening_keeps_the_first_boxes():
    ids = [f"gw-{i:04d}" for i in range(2000)]
    assert [bucket(g) for g in ids] == [bucket(g) for g in ids]
    assert all(0 <= bucket(g) < 100 for g in ids)
    for pct in (10, 50):
        inside = sum(eligible(RolloutPolicy(percent=pct), g, NOW)[0] for g in ids)
        assert abs(inside / len(ids) - pct / 100) < 0.04
    ten = {g for g in ids if eligible(RolloutPolicy(percent=10), g, NOW)[0]}
    fifty = {g for g in ids if eligible(RolloutPolicy(percent=50), g, NOW)[0]}
    assert ten < fifty


def test_halt_not_before_and_cohorts():
    late = RolloutPolicy(percent=100, not_before=NOW + dt.timedelta(hours=1))
    assert eligible(late, "gw-1", NOW) == (False, "rollout starts 2026-12-02T13:00:00Z")
    assert eligible(late, "gw-1", NOW + dt.timedelta(hours=1))[0]
    outside = next(g for g in (f"gw-{i}" for i in range(100)) if bucket(g) >= 5)
    assert not eligible(RolloutPolicy(percent=5), outside, NOW)[0]
    assert eligible(RolloutPolicy(percent=5, cohorts=(outside,)), outside, NOW)[0]
    assert eligible(RolloutPolicy(percent=100, cohorts=(outside,), halted=True), outside, NOW) == (
        False, "rollout halted")  # fmt: skip
    assert RolloutPolicy.from_json({"percent": "lots"}).halted  # malformed: offered to nobody
    with pytest.raises(ValueError, match="whole number"):
        RolloutPolicy(percent=101)


@dataclasses.dataclass
class SharedList:
    """What every box's TUF client sees this round: the list one real client verified."""

    releases: list[Release]
    dir: Path
    stalled: set[str] = dataclasses.field(default_factory=set)  # boxes whose download is cut off

    def for_box(self, gateway_id: str) -> "BoxSource":
        return BoxSource(self, gateway_id)


@dataclasses.dataclass
class BoxSource:
    shared: SharedList
    gateway_id: str

    def check(self) -> list[Release]:
        return list(self.shared.releases)

    def download(self, release: Release) -> Path:
        if self.gateway_id in self.shared.stalled:
            raise RefusedUpdate("interrupted", "the link dropped")
        path = self.shared.dir / f"{self.gateway_id}-{release.version}.raucb"
        path.write_text(release.version)  # MemoryRauc installs "the version written in the file"
        return path


class Fleet:
    def __init__(self, tmp: Path, shared: SharedList) -> None:
        self.tmp, self.shared = tmp, shared
        self.ids = [f"gw-{i:04d}" for i in range(FLEET_SIZE)]
        self.raucs = {g: MemoryRauc() for g in self.ids}
        self.now = NOW.timestamp()

    def agent(self, gateway_id: str) -> OtaAgent:
        rauc = self.raucs[gateway_id]

        async def reboot() -> None:
            rauc.reboot()

        hooks = AgentHooks(alarm_blocks_reboot=lambda: False, health={}, reboot=reboot,
                           report=lambda *a: None, status=lambda s: None, now=lambda: self.now)  # fmt: skip
        cfg = AgentConfig(COMPATIBLE, "1.0.0", gateway_id, poll_interval_s=10, poll_jitter_s=0, health_timeout_s=0.1)
        state = StateFile(self.tmp / "boxes" / gateway_id / "ota.json")
        return OtaAgent(cfg, self.shared.for_box(gateway_id), rauc, state, hooks)

    async def poll(self) -> None:
        """Every box polls once; one that rebooted comes up and commits."""
        for g in self.ids:
            agent = self.agent(g)
            await agent.resume()
            if await agent.cycle() is OtaState.REBOOTING:
                await self.agent(g).resume()

    def running(self, version: str) -> set[str]:
        return {g for g, r in self.raucs.items() if r.versions[r.booted_slot] == version}

    def state(self, g: str) -> OtaState:
        return StateFile(self.tmp / "boxes" / g / "ota.json").load().state


def bedside(*args):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, check=False)


async def test_a_simulated_fleet_follows_the_rollout(tmp_path, fleet: FleetRepo, server, pki, box_dir):
    bundle = tmp_path / "b.raucb"
    bundle.write_bytes(b"1.1.0")
    fleet.add_release(bundle, "1.1.0", COMPATIBLE, rollout=RolloutPolicy(percent=10))
    client = make_client(box_dir, server.url, pki)

    def signed() -> list[Release]:  # the metadata as a box's TUF client verifies it now
        return client.check()

    shared = SharedList(signed(), tmp_path)
    boxes = Fleet(tmp_path, shared)
    first = {g for g in boxes.ids if bucket(g) < 10}
    await boxes.poll()
    assert boxes.running("1.1.0") == first and 0.05 < len(first) / FLEET_SIZE < 0.15

    # Widen to 50 %; a few of the new boxes lose their link mid-download.
    assert bedside("ota", "rollout", "1.1.0", "--dir", str(fleet.fleet), "--percent", "50").returncode == 0
    shared.releases = signed()
    half = {g for g in boxes.ids if bucket(g) < 50}
    shared.stalled = set(sorted(half - first)[:5])
    await boxes.poll()
    assert boxes.running("1.1.0") == half - shared.stalled and 0.4 < len(half) / FLEET_SIZE < 0.6
    assert all(boxes.state(g) is OtaState.DOWNLOADING for g in shared.stalled)

    # Halt, then open it to everyone: still nobody new starts; the 5 that had started finish.
    res = bedside("ota", "rollout", "bedside-test/1.1.0/b.raucb", "--dir", str(fleet.fleet), "--halt")
    assert res.returncode == 0 and '"halted": true' in res.stdout
    assert bedside("ota", "rollout", "1.1.0", "--dir", str(fleet.fleet), "--percent", "100").returncode == 0
    shared.releases = signed()
    shared.stalled = set()
    await boxes.poll()
    assert boxes.running("1.1.0") == half
    await boxes.poll()
    assert boxes.running("1.1.0") == half  # a halted release is never started anew

    # A named box outside the buckets, and a start time.
    outsider = next(g for g in boxes.ids if g not in half)
    assert bedside("ota", "rollout", "1.1.0", "--dir", str(fleet.fleet), "--resume", "--percent", "50",
                   "--cohort", outsider, "--not-before", "2026-12-02T18:00:00Z").returncode == 0  # fmt: skip
    shared.releases = signed()
    await boxes.poll()
    assert outsider not in boxes.running("1.1.0")  # not before 18:00
    boxes.now = (NOW + dt.timedelta(hours=6)).timestamp()
    await boxes.poll()
    assert boxes.running("1.1.0") == half | {outsider}


def test_rollout_refuses_what_it_cannot_do_in_one_line(tmp_path, fleet):
    bundle = tmp_path / "b.raucb"
    bundle.write_bytes(b"x")
    fleet.add_release(bundle, "1.1.0", COMPATIBLE)
    before = fleet.load("targets").signed.version
    for args, says in (
        (["1.1.0", "--percent", "150"], "not a whole number between 0 and 100"),
        (["9.9.9", "--halt"], "9.9.9: no release by that name"),
        (["1.1.0"], "nothing to change"),
        (["1.1.0", "--not-before", "tomorrow"], "not an RFC 3339 time"),
    ):
        res = bedside("ota", "rollout", *args, "--dir", str(fleet.fleet))
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and says in res.stderr, res.stderr
    assert fleet.load("targets").signed.version == before
