"""The suite format: the packaged suite parses; anything wrong is one line naming the key,
and `bedside hil run` answers it with exit code 2 and no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from hil.suite.cli import DEFAULT_SUITE
from hil.suite.spec import ACTIONS, EXPECTS, FAMILIES, SuiteError, load_suite, parse_suite

_SCENARIO = """
[[scenario]]
name = "s"
duration_s = 3
[[scenario.device]]
id = "d"
family = "masimo"
bed = "B"
"""


def test_the_default_suite_parses_and_covers_every_step_kind_it_needs() -> None:
    suite = load_suite(DEFAULT_SUITE)
    actions = {step.action for s in suite.scenarios for step in s.steps}
    kinds = {exp.kind for s in suite.scenarios for exp in s.expects}
    assert actions >= {"vitals", "cable_pull", "garbage", "broker_down", "broker_up", "kill_gateway", "ack", "pause"}
    assert actions >= {"broker_stall", "silence", "clock_step", "snapshot", "device_reboot"}
    assert actions <= set(ACTIONS)
    assert kinds == set(EXPECTS) - {"rss_bounded", "no_missed_alarm"}  # the soak's; the VM suite's OTA
    vm_kinds = {exp.kind for s in load_suite(Path(DEFAULT_SUITE).with_name("vm.toml")).scenarios for exp in s.expects}
    assert "no_missed_alarm" in vm_kinds
    assert {d.family for s in suite.scenarios for d in s.devices} == set(FAMILIES)  # every family the gateway drives
    pulled = {
        next(d.family for d in s.devices if d.id == step.device)
        for s in suite.scenarios
        for step in s.steps
        if step.action == "cable_pull"
    }
    assert pulled == set(FAMILIES)  # a cable pull (BLE: out of range; HL7: connection drop) on every family
    assert all(Path(s.rules_path).is_file() for s in suite.scenarios if s.rules_path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[scenario.step]]\nat_s = 1\naction = "explode"\n', "step[0].action: unknown 'explode'"),
        ('[[scenario.step]]\nat_s = 1\naction = "cable_pull"\n', "step[0]: cable_pull needs device"),
        ('[[scenario.step]]\nat_s = 1\naction = "garbage"\ndevice = "nope"\n', "no device 'nope'"),
        ('[[scenario.expect]]\nkind = "alarm"\n', "expect[0]: alarm needs rule"),
        ('[[scenario.expect]]\nkind = "alarm"\nrule = "x"\nafter = "ghost"\n', "no step named 'ghost'"),
        ('[[scenario.expect]]\nkind = "no_loss"\nwhere = "moon"\n', "use local or broker"),
        ('[[scenario.expect]]\nkind = "no_loss"\ncolour = 1\n', "unknown key 'colour'"),
        ('[[scenario.expect]]\nkind = "quarantined"\n', "expect[0]: quarantined needs device"),
        ('[[scenario.step]]\nat_s = 1\naction = "device_reboot"\n', "step[0]: device_reboot needs device"),
        (
            '[[scenario.step]]\nat_s = 1\naction = "device_reboot"\ndevice = "d"\ndown_s = 0\n',
            "step[0]: at_s must be >= 0 and down_s > 0",
        ),
        (
            '[[scenario.step]]\nat_s = 1\naction = "garbage"\nname = "g"\ndevice = "d"\n'
            '[[scenario.expect]]\nkind = "recovery"\nafter = "g/end"\n',
            "no step named 'g/end'",  # only a step with a duration has an end
        ),
        (
            '[[scenario.step]]\nat_s = 1\naction = "broker_down"\nname = "d"\n'
            '[[scenario.expect]]\nkind = "backlog"\nafter = "d"\n',
            "backlog needs after and until",
        ),
        (
            '[[scenario.step]]\nat_s = 1\naction = "ota"\nname = "u"\n'
            '[[scenario.expect]]\nkind = "no_missed_alarm"\nrule = "x"\nafter = "u"\nuntil = "u/end"\n',
            "no_missed_alarm needs after, until (the window) and each",
        ),
        (
            '[[scenario.step]]\nat_s = 1\naction = "silence"\ndevice = "d"\nfrom_step = "ota/up"\n',
            "step[0].from_step: no step of the timeline named 'ota/up'",
        ),
        (
            '[[scenario.step]]\nat_s = 1\naction = "ota"\nname = "u"\n'
            '[[scenario.step]]\nat_s = 1\naction = "silence"\ndevice = "d"\nname = "a"\nfrom_step = "u/up"\n'
            '[[scenario.step]]\nat_s = 1\naction = "silence"\ndevice = "d"\nfrom_step = "a"\n',
            "step[2].from_step: no step of the timeline named 'a'",
        ),
        (
            '[[scenario.step]]\nat_s = 1\naction = "ota"\nname = "u"\n'
            '[[scenario.expect]]\nkind = "no_missed_alarm"\nrule = "x"\nafter = "u"\nuntil = "u/up"\neach = "q"\n',
            "each: no step name begins with 'q'",
        ),
    ],
)
def test_a_wrong_suite_is_one_line_naming_the_key(extra: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as err:
        parse_suite(_SCENARIO + extra, tmp_path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_vm_target_refuses_what_it_cannot_play_or_observe() -> None:
    from hil.suite.cli import VM_SUITE
    from hil.suite.vm_target import check_vm_suite

    check_vm_suite(load_suite(VM_SUITE), fleet=True)  # its own suite plays, with a fleet for its OTA
    with pytest.raises(SuiteError, match="cannot play ota \\(needs --fleet and --release\\)"):
        check_vm_suite(load_suite(VM_SUITE))
    with pytest.raises(SuiteError, match="--target vm"):
        check_vm_suite(load_suite(DEFAULT_SUITE))  # ack, kill -9, local outputs: not from outside the box
    hl7 = _SCENARIO.replace('"masimo"', '"hl7"') + '[[scenario.expect]]\nkind = "recovery"\ndevice = "d"\n'
    with pytest.raises(SuiteError, match="wires a serial oximeter"):
        check_vm_suite(parse_suite(hl7, Path(".")))


def test_an_unsteerable_family_and_a_missing_rule_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="the bench steers masimo, nonin, intellivue, datex, medibus, hl7, ble"):
        parse_suite(_SCENARIO.replace('"masimo"', '"lifepak"'), tmp_path)
    clock_step = '[[scenario.step]]\nat_s = 1\naction = "clock_step"\ndevice = "d"\n'
    ble_clock = _SCENARIO.replace('"masimo"', '"ble"') + clock_step
    with pytest.raises(SuiteError, match="clock_step: a BLE oximeter's measurements carry no time"):
        parse_suite(ble_clock, tmp_path)
    with pytest.raises(SuiteError, match="rules_path: no such file"):
        parse_suite(_SCENARIO.replace("duration_s = 3", 'duration_s = 3\nrules_path = "x.toml"'), tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{bad}"], "not TOML"),
        (["{missing}"], "cannot read"),
        (["{good}", "--target", "ssh://box"], "--target ssh:// needs --bench FILE"),
        (["{good}", "--target", "ssh://box:http"], "--target: 'ssh://box:http': use ssh://[user@]host[:port]"),
        (["{good}", "--target", "box"], "--target: 'box'; use local, vm or ssh://[user@]HOST[:PORT]"),
        (["{good}", "--target", "ssh://box", "--bench", "{bad}"], "bad.toml: cannot read: Expected"),
        (["{good}", "--target", "vm", "--image", "{missing}"], "has no bedside-amd64.img and rootfs.sqfs"),
        (["{good}", "--scenario", "nope"], "--scenario: unknown 'nope'"),
        (["{good}", "--fleet", "{missing}"], "--fleet/--release: only with --target vm"),
        (["{ota}", "--target", "vm", "--image", "{image}"], "cannot play ota (needs --fleet and --release)"),
        (["{ota}"], "--target local cannot play ota"),
        (
            ["{ota}", "--target", "vm", "--image", "{image}", "--fleet", "{image}", "--release", "{missing}"],
            "--fleet/--release: ",
        ),
    ],
)
def test_the_command_answers_bad_input_with_exit_2_and_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[[scenario]\n")
    (tmp_path / "good.toml").write_text(_SCENARIO)
    (tmp_path / "ota.toml").write_text(_SCENARIO + '[[scenario.step]]\nat_s = 1\naction = "ota"\n')
    (tmp_path / "image").mkdir()
    for name in ("bedside-amd64.img", "rootfs.sqfs"):
        (tmp_path / "image" / name).write_bytes(b"")
    paths = {"bad": tmp_path / "bad.toml", "missing": tmp_path / "missing.toml", "good": tmp_path / "good.toml"}
    paths |= {"ota": tmp_path / "ota.toml", "image": tmp_path / "image"}
    argv = [a.format(**paths) for a in args]
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "hil", "run", *argv, "--report", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert not (tmp_path / "r").exists()  # nothing was run, nothing written


_REBOOT = """
[[scenario.step]]
at_s = 1
action = "device_reboot"
name = "boot"
device = "d"
down_s = 2
[[scenario.expect]]
kind = "recovery"
device = "d"
after = "boot/end"
within_ms = 1000
"""


@pytest.mark.parametrize("family", ["masimo", "nonin", "intellivue", "datex", "medibus", "hl7", "ble"])
def test_a_device_reboot_of_every_family_parses_with_its_end_as_a_step(family: str, tmp_path: Path) -> None:
    suite = parse_suite(_SCENARIO.replace('"masimo"', f'"{family}"') + _REBOOT, tmp_path)
    (step,) = suite.scenarios[0].steps
    assert (step.action, step.device, step.down_s) == ("device_reboot", "d", 2.0)
    assert suite.scenarios[0].expects[0].after == "boot/end"


def test_which_targets_play_a_device_reboot() -> None:
    from hil.suite.faults import FAULTS, check_plays
    from hil.suite.ssh_target import check_ssh_suite, load_bench
    from hil.suite.vm_target import check_vm_suite

    oximeter = parse_suite(_SCENARIO + _REBOOT, Path("."))
    assert "device_reboot" not in FAULTS  # the bench plays it, not the box
    check_plays(oximeter, frozenset(), "any")
    check_vm_suite(oximeter)  # the VM's one serial oximeter: the bench owns the device end
    bench = load_bench(str(DEFAULT_SUITE.with_name("bench.example.toml")))
    check_ssh_suite(oximeter, bench)  # a bench oximeter behind its cable
    monitor = parse_suite(_SCENARIO.replace('"masimo"', '"intellivue"') + _REBOOT, Path("."))
    with pytest.raises(SuiteError) as err:
        check_ssh_suite(monitor, bench)
    assert str(err.value) == (
        "scenario 's': --target ssh cannot reboot 'd': the bench wires masimo, nonin to its cables"
    )
    with pytest.raises(SuiteError, match="wires a serial oximeter"):
        check_vm_suite(monitor)
