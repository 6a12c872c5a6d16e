"""The box's faults on `--target local` for real (root): the gateway in a network
namespace of its own behind a veth pair, partitioned by nftables; its /data on a
16 MiB tmpfs, filled by fallocate. The packaged faults suite passes, and each fault
provably happened: no alarm reached the broker during the partition, the store
failed while /data was full; nothing is left behind. A target that cannot play a
fault refuses the suite at load with one line."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hil.suite.cli import DEFAULT_SUITE
from hil.suite.faults import FAULTS, check_plays
from hil.suite.local_box import check_local_suite
from hil.suite.spec import SuiteError, load_suite, parse_suite

pytestmark = pytest.mark.integration

FAULTS_SUITE = DEFAULT_SUITE.with_name("faults.toml")


def test_the_faults_suite_passes_and_each_fault_happened(tmp_path: Path) -> None:
    report = tmp_path / "report"
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(FAULTS_SUITE), "--report", str(report)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data: dict[str, Any] = json.loads((report / "summary.json").read_text())
    by_name = {s["name"]: {e["expect"]: e for e in s["expectations"]} for s in data["scenarios"]}
    part = by_name["partition"]
    held = next(e for k, e in part.items() if k.startswith("no_alarm rule=spo2-desat at broker"))
    assert held["ok"]  # nothing crossed the partition
    healed = next(e for k, e in part.items() if k.startswith("alarm rule=spo2-desat at broker"))
    assert healed["ok"] and healed["latency_ms"] < 5000  # delivered after the heal
    assert any(k == "no_loss" and e["ok"] for k, e in part.items())
    disk = by_name["disk-full"]
    raised = next(e for k, e in disk.items() if k.startswith("alarm rule=store-failure at local"))
    assert raised["ok"]
    log = (report / "scenarios" / "disk-full" / "gateway.log").read_text()
    assert "database or disk is full" in log and "store writes again" in log
    # Nothing left behind: no namespace, no mount.
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert "bedside-hil-" not in netns
    assert "bedside-hil-data" not in Path("/proc/mounts").read_text()


def test_each_fault_step_ends_as_a_step_of_its_own(tmp_path: Path) -> None:
    suite = load_suite(FAULTS_SUITE)
    assert {s.action for sc in suite.scenarios for s in sc.steps} >= {"partition", "disk_full"}
    text = FAULTS_SUITE.read_text().replace('after = "cut/end"', 'after = "cut/done"', 1)
    with pytest.raises(SuiteError, match="no step named 'cut/done'"):
        parse_suite(text, FAULTS_SUITE.parent)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("box_clock_step", "--target local cannot play box_clock_step (the box's clock would be this machine's"),
        ("power_cut", "--target local cannot play power_cut (use --target vm)"),
    ],
)
def test_the_local_target_refuses_what_it_cannot_play(action: str, message: str, tmp_path: Path) -> None:
    text = FAULTS_SUITE.read_text().replace('action = "partition"', f'action = "{action}"', 1)
    suite = parse_suite(text, FAULTS_SUITE.parent)
    with pytest.raises(SuiteError) as err:
        check_local_suite(suite)
    assert message in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "s.toml").write_text(text.replace('"rules_fast.toml"', f'"{FAULTS_SUITE.parent}/rules_fast.toml"'))
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", str(tmp_path / "s.toml"),
         "--report", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and message in res.stderr
    assert not (tmp_path / "r").exists()


def test_the_vm_target_refuses_the_faults_it_has_no_shell_for() -> None:
    from hil.suite.vm_target import check_vm_suite

    with pytest.raises(SuiteError, match="--target vm"):
        check_vm_suite(load_suite(FAULTS_SUITE))
    check_plays(load_suite(FAULTS_SUITE), frozenset(FAULTS), "any")  # every fault named is known


def test_the_box_suite_and_the_example_bench_are_what_the_ssh_target_plays() -> None:
    from hil.suite.ssh_target import check_ssh_suite, load_bench

    bench = load_bench(str(DEFAULT_SUITE.with_name("bench.example.toml")))
    assert bench.service.kill == "systemctl kill -s KILL --kill-whom=main bedside" and len(bench.cables) == 2
    check_ssh_suite(load_suite(DEFAULT_SUITE.with_name("box.toml")), bench)
    check_ssh_suite(load_suite(FAULTS_SUITE), bench)
    with pytest.raises(SuiteError, match="--target ssh"):  # HL7 and BLE devices, cable pulls
        check_ssh_suite(load_suite(DEFAULT_SUITE), bench)
