"""The expectation checker over recorded events: it passes what held and fails, with
the evidence, what did not (late, early, missing, doubled differently, lost)."""

from typing import Any

from hil.suite.check import Event, check, describe
from hil.suite.figures import percentiles, resources, slope_per_hour
from hil.suite.spec import Device, Expect, Scenario, Step
from hil.suite.target import Sample

T0 = 1_000.0


def _scenario(*expects: Expect) -> Scenario:
    steps = (Step(1.0, "vitals", name="drop", device="d"), Step(5.0, "snapshot", name="snap"))
    return Scenario("s", 10.0, (Device("d", "masimo", "B"),), steps, expects)


def _alarm(t: float, source: str, rule: str = "spo2-desat", state: str = "active", **kw: Any) -> Event:
    data = {"rule_id": rule, "state": state, "bed_id": "B", "priority": "high", **kw}
    return Event(t, source, "alarm", data)


def _step(name: str, t: float) -> Event:
    return Event(t, "bench", "step", {"name": name, "action": "vitals", "trigger_t": t})


def test_an_alarm_in_time_passes_with_its_latency_and_a_late_one_fails() -> None:
    exp = Expect("alarm", after="drop", rule="spo2-desat", priority="high", bed="B", where="broker", within_ms=200)
    events = [_step("drop", T0 + 1), _alarm(T0 + 1.05, "broker")]
    (ok,) = check(_scenario(exp), events, T0)
    assert ok.ok and ok.latency_ms is not None and abs(ok.latency_ms - 50) < 1e-6
    (late,) = check(_scenario(exp), [_step("drop", T0 + 1), _alarm(T0 + 1.3, "broker")], T0)
    assert not late.ok and "300 ms" in late.detail and "later than 200 ms" in late.detail


def test_the_alarm_must_match_rule_priority_bed_path_and_state() -> None:
    exp = Expect("alarm", after="drop", rule="spo2-desat", priority="high", bed="B", where="broker")
    wrong = [
        _alarm(T0 + 1.1, "local"),  # the local output, not the broker
        _alarm(T0 + 1.1, "broker", priority="medium"),
        _alarm(T0 + 1.1, "broker", bed_id="C"),
        _alarm(T0 + 1.1, "broker", rule="spo2-low"),
        _alarm(T0 + 1.1, "broker", state="cleared"),
    ]
    (out,) = check(_scenario(exp), [_step("drop", T0 + 1), *wrong], T0)
    assert not out.ok and "no active spo2-desat alarm at broker" in out.detail
    device_alarm = _alarm(T0 + 1.1, "broker", rule="spo2-desat:alarm_spo2_low@d")  # rule:flag@device keys
    assert check(_scenario(exp), [_step("drop", T0 + 1), device_alarm], T0)[0].ok


def test_a_condition_delay_fails_an_alarm_that_came_too_early() -> None:
    exp = Expect("alarm", after="drop", rule="spo2-desat", where="local", not_before_ms=2900, within_ms=4000)
    (early,) = check(_scenario(exp), [_step("drop", T0 + 1), _alarm(T0 + 1.5, "local")], T0)
    assert not early.ok and "before 2900 ms" in early.detail
    quiet = Expect("no_alarm", after="drop", rule="spo2-desat", where="local", within_ms=2800)
    (loud,) = check(_scenario(quiet), [_step("drop", T0 + 1), _alarm(T0 + 1.5, "local")], T0)
    assert not loud.ok


def test_a_step_that_never_played_fails_every_expectation_after_it() -> None:
    exp = Expect("alarm", after="drop", rule="spo2-desat")
    (out,) = check(_scenario(exp), [_alarm(T0 + 2, "broker")], T0)
    assert not out.ok and "never played" in out.detail


def test_snapshots_decide_active_latched_and_inactive() -> None:
    snap = Event(
        T0 + 5, "control", "snapshot", {"name": "snap", "alarms": [{"rule_id": "spo2-desat", "state": "latched"}]}
    )
    latched = Expect("active", after="snap", rule="spo2-desat", state="latched")
    gone = Expect("inactive", after="snap", rule="spo2-desat")
    other = Expect("active", after="snap", rule="spo2-desat", state="acknowledged")
    events = [_step("snap", T0 + 5), snap]
    a, b, c = check(_scenario(latched, gone, other), events, T0)
    assert a.ok and not b.ok and not c.ok and "latched" in b.detail


def _obs(source: str, obs_id: str, value: float = 97.0, t: float = T0 + 2) -> Event:
    return Event(t, source, "obs", {"obs_id": obs_id, "value": value, "device_id": "d"})


def test_no_loss_dedupes_by_obs_id_and_fails_on_a_lost_or_changed_record() -> None:
    exp = Expect("no_loss")
    local = [_obs("local", "a"), _obs("local", "b")]
    held = check(_scenario(exp), [*local, _obs("broker", "a"), _obs("broker", "b"), _obs("broker", "a")], T0)[0]
    assert held.ok and "all 2" in held.detail
    lost = check(_scenario(exp), [*local, _obs("broker", "a")], T0)[0]
    assert not lost.ok and "1 of 2 observations missing" in lost.detail
    changed = check(_scenario(exp), [*local, _obs("broker", "a"), _obs("broker", "b"), _obs("broker", "a", 50.0)], T0)
    assert not changed[0].ok and "1 changed" in changed[0].detail
    assert not check(_scenario(exp), [], T0)[0].ok  # nothing recorded is not "nothing lost"


def test_describe_names_what_failed() -> None:
    exp = Expect("alarm", after="drop", rule="spo2-desat", priority="high", bed="B", where="broker", within_ms=200)
    assert describe(exp) == "alarm rule=spo2-desat priority=high bed=B at broker within 200 ms after step 'drop'"


def test_figures_percentiles_and_growth() -> None:
    p = percentiles([float(v) for v in range(1, 101)])
    assert (p["n"], p["p50"], p["p95"], p["p99"], p["max"]) == (100, 50, 95, 99, 100)
    assert percentiles([]) == {"n": 0}
    assert abs(slope_per_hour([(0.0, 10.0), (1800.0, 15.0), (3600.0, 20.0)]) - 10.0) < 1e-9
    flat = [Sample(T0 + i, cpu_s=0.01 * i, rss_bytes=50 * 2**20) for i in range(40)]
    res = resources(flat)
    assert res["rss_growth_mib_per_h"] == 0.0 and abs(res["cpu_percent"] - 1.0) < 1e-6
    leak = [Sample(T0 + i, cpu_s=0.0, rss_bytes=(50 + i) * 2**20) for i in range(40)]
    assert abs(resources(leak)["rss_growth_mib_per_h"] - 3600) < 1e-6


def _samples(rss_mib: list[float]) -> list[Event]:
    return [
        Event(T0 + i / 2, "gateway", "sample", {"cpu_s": 0.0, "rss_bytes": int(v * 2**20)})
        for i, v in enumerate(rss_mib)
    ]


def test_rss_bounded_passes_a_plateau_and_fails_a_leak() -> None:
    exp = Expect("rss_bounded", max_mib=4.0)
    warmup = [5.0, 20.0, 40.0, 45.0, 47.0, 47.5, 48.0, 48.0, 48.0, 48.0]
    plateau = warmup + [48.0 + (i % 3) * 0.2 for i in range(30)]  # a bounded buffer filling and emptying
    leak = warmup + [48.0 + 0.5 * i for i in range(30)]  # 1 MiB/s, never levelling off
    (flat,) = check(_scenario(exp), _samples(plateau), T0)
    (grows,) = check(_scenario(exp), _samples(leak), T0)
    assert flat.ok, flat.detail
    assert not grows.ok and "bound 4" in grows.detail
    (few,) = check(_scenario(exp), _samples([48.0, 48.0]), T0)
    assert not few.ok and "too few" in few.detail


def test_a_window_anchored_on_a_late_mark_stays_open_until_it_is_settled_or_over() -> None:
    from hil.suite.check import open_until

    late = "cut/end"  # a box that booted slowly: its power-back mark came at 60 s of a 10 s scenario
    alarm = Expect("alarm", after=late, rule="spo2-desat", where="broker", within_ms=30_000)
    quiet = Expect("no_alarm", after=late, rule="hr-high", where="broker", within_ms=5_000)
    back = Expect("recovery", after=late, device="d", where="broker", within_ms=20_000)
    scenario = _scenario(alarm, quiet, back)
    mark = Event(T0 + 60, "bench", "step", {"name": late, "action": "power_cut", "trigger_t": T0 + 60})
    assert open_until(scenario, [], T0) == 0.0  # the mark has not come: nothing to wait for
    assert open_until(scenario, [mark], T0) == T0 + 90  # the alarm's window is the longest
    obs = Event(T0 + 61, "broker", "obs", {"device_id": "d", "received_t": T0 + 61})
    came = [mark, obs, _alarm(T0 + 62, "broker")]
    assert open_until(scenario, came, T0) == T0 + 65  # settled but for the no_alarm window
    # A no_alarm window the alarm came in has failed: nothing left to wait for.
    assert open_until(scenario, [*came, _alarm(T0 + 63, "broker", rule="hr-high")], T0) == 0.0
    early = Expect("alarm", after=late, rule="spo2-desat", where="broker", within_ms=30_000, not_before_ms=5_000)
    # An alarm that came too early is a verdict already: waiting cannot change it.
    assert open_until(_scenario(early), [mark, _alarm(T0 + 61, "broker")], T0) == 0.0
    # Windows anchored on the timeline's own steps are inside the duration: they close in time.
    assert (
        open_until(_scenario(Expect("alarm", after="drop", rule="x", within_ms=2000)), [_step("drop", T0 + 1)], T0)
        == T0 + 3
    )
