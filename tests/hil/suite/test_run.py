"""`bedside hil run` for real: the default suite against `bedside run` here (ptys, the
gateway's control socket, Mosquitto with mutual TLS 1.3) passes and writes its three
reports; a deliberately broken build (the desaturation rule removed) fails with a
report that names the expectation it broke."""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from hil.suite.cli import DEFAULT_SUITE

pytestmark = pytest.mark.integration


def _hil_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = tmp_path_factory.mktemp("report")
    return _hil_run(str(DEFAULT_SUITE), "--target", "local", "--report", str(report)), report


def test_the_default_suite_passes_against_the_local_target(
    default_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    res, report = default_run
    assert res.returncode == 0, res.stdout + res.stderr
    data: dict[str, Any] = json.loads((report / "summary.json").read_text())
    assert data["ok"] and data["failed"] == [] and data["target"] == "local"
    assert len(data["scenarios"]) == 11
    assert "device-reboot" in {s["name"] for s in data["scenarios"]}
    for scenario in data["scenarios"]:
        assert scenario["expectations"] and all(e["ok"] for e in scenario["expectations"]), scenario
        assert scenario["resources"]["rss_max_mib"] > 10  # the gateway was sampled while it ran
        assert (Path(scenario["evidence"]) / "gateway.toml").is_file()
    # The seeds' target at the broker, and the local output well inside it.
    broker = data["latency_ms"]["trigger_to_broker"]
    local = data["latency_ms"]["trigger_to_local_output"]
    assert broker["n"] >= 2 and broker["p95"] < 200
    assert local["n"] >= 2 and local["p95"] < 50
    assert "PASS" in res.stdout


def test_every_family_the_gateway_drives_was_on_the_bench_and_the_offline_backlog_came_back(
    default_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    from drivers.registry import FAMILIES, family_for
    from hil.suite.families import PROTOCOLS

    _, report = default_run
    data = json.loads((report / "summary.json").read_text())
    configured = set()
    for scenario in data["scenarios"]:
        text = (Path(scenario["evidence"]) / "gateway.toml").read_text()
        configured |= set(re.findall(r'^protocol = "([^"]+)"', text, re.MULTILINE))
    assert configured == set(PROTOCOLS.values())
    assert {family_for(p).name for p in configured} == {f.name for f in FAMILIES}  # every registered family
    held = {s["name"]: {e["expect"].split(" ")[0]: e["detail"] for e in s["expectations"]} for s in data["scenarios"]}
    backlog = held["offline-72h-compressed"]["backlog"]
    offline = int(re.search(r"all (\d+) offline observations", backlog).group(1))  # type: ignore[union-attr]
    # 20 s at 216 lines/s = 4,320 Masimo lines of 5 observations (5 % for the receive
    # stamps at the window's edges on a loaded machine)
    assert offline >= 0.95 * 4320 * 5
    assert "MiB on disk" in backlog and "in order per device" in backlog
    assert re.search(r"\((\d+) resends, identical\)", held["duplicate-resends"]["no_loss"])
    assert "without a patient" in held["unpaired-device"]["quarantined"]
    # Every device rebooted came back: the IntelliVue only after the gateway associated again.
    reboot = next(s for s in data["scenarios"] if s["name"] == "device-reboot")["expectations"]
    recovered = {e["expect"].split()[1] for e in reboot if e["expect"].startswith("recovery") and e["ok"]}
    assert recovered == {"device=masimo-1", "device=nonin-1", "device=mp-1", "device=evita-1", "device=hl7-1"}


def test_the_reports_agree_junit_and_one_html_file(default_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, report = default_run
    data = json.loads((report / "summary.json").read_text())
    suite = ET.parse(report / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert suite.get("failures") == "0"
    assert len(cases) == sum(len(s["expectations"]) for s in data["scenarios"]) == int(suite.get("tests", "-1"))
    assert not list(suite.iter("failure"))
    page = (report / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)
    assert len(images) >= 1 + 2 * len(data["scenarios"])  # histograms, a timeline and resources per scenario
    assert "<script" not in page and 'src="http' not in page  # one file, nothing fetched


def test_a_broken_rule_file_fails_the_suite_naming_the_expectation(tmp_path: Path) -> None:
    rules = (DEFAULT_SUITE.parent / "rules_fast.toml").read_text()
    start = rules.index('[[rule]]\nid = "spo2-desat"')
    broken = rules[:start] + rules[rules.index("[[rule]]", start + 1) :]
    assert 'id = "spo2-desat"' not in broken
    (tmp_path / "broken_rules.toml").write_text(broken)
    suite = DEFAULT_SUITE.read_text().replace('rules_path = "rules_fast.toml"', 'rules_path = "broken_rules.toml"')
    (tmp_path / "suite.toml").write_text(suite)
    report = tmp_path / "report"
    res = _hil_run(str(tmp_path / "suite.toml"), "--scenario", "desaturation-latching-ack", "--report", str(report))
    assert res.returncode == 1, res.stdout + res.stderr
    named = "desaturation-latching-ack: alarm rule=spo2-desat priority=high bed=ICU-1 at broker within 200 ms"
    assert any(line.startswith(f"FAIL {named}") for line in res.stderr.splitlines()), res.stderr
    data = json.loads((report / "summary.json").read_text())
    assert not data["ok"] and any(f.startswith(named) for f in data["failed"])
    assert any("no_loss" in e["expect"] and e["ok"] for e in data["scenarios"][0]["expectations"])  # the rest held
    failures = {c.get("name"): c.find("failure") for c in ET.parse(report / "junit.xml").getroot().iter("testcase")}
    failing = [name for name, f in failures.items() if f is not None]
    assert named.split(": ", 1)[1] + " after step 'desat'" in failing
    page = (report / "report.html").read_text()
    assert "FAIL" in page and "no active spo2-desat alarm at broker after the trigger" in page
