from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import AlarmEvent, Observation, TechnicalEvent
from appliance.core.vocab import Priority
from rules.engine import Ack, Annunciation, Engine, EngineState, Pause, Tick
from rules.spec import parse_rules

SPO2 = "MDC_PULS_OXIM_SAT_O2"
PULSE = "MDC_PULS_OXIM_PULS_RATE"
T0 = 1_700_000_000.0


def obs(value, t, metric=SPO2, bed="B1", quality="valid", flags=(), device="d1"):
    when = datetime.fromtimestamp(t, UTC)
    return Observation(
        obs_id=f"{metric}@{t}", metric=metric, code=0, value=value, unit="%", time=when, received=when,
        quality=quality, device_id=device, bed_id=bed, patient_id=None, flags=frozenset(flags),
    )  # fmt: skip


def engine(text):
    return Engine(parse_rules(text)), EngineState()


LOW = """
[[rule]]
id = "spo2-low"
kind = "limit"
metric = "MDC_PULS_OXIM_SAT_O2"
below = 90.0
clear = 92.0
for_s = {for_s}
priority = "{priority}"
latching = {latching}
escalate_after_s = {escalate}
"""


def low(for_s=0.0, priority="medium", latching="false", escalate=0.0):
    return engine(LOW.format(for_s=for_s, priority=priority, latching=latching, escalate=escalate))


class Run:
    def __init__(self, eng, state):
        self.eng, self.state = eng, state
        self.events: list[AlarmEvent] = []
        self.annunciations: list[Annunciation] = []

    def __call__(self, event, t):
        self.state, actions = self.eng.evaluate(self.state, event, t)
        for a in actions:
            (self.events if isinstance(a, AlarmEvent) else self.annunciations).append(a)
        return [a.state for a in actions if isinstance(a, AlarmEvent)]


def test_condition_delay_then_active_then_cleared():
    run = Run(*low(for_s=10))
    assert run(obs(85, T0), T0) == []
    assert run(Tick(), T0 + 9.9) == []
    assert run(obs(86, T0 + 10), T0 + 10) == []  # timers advance on ticks only
    assert run(Tick(), T0 + 10) == ["active"]
    ev = run.events[-1]
    assert (ev.rule_id, ev.bed_id, ev.priority, ev.kind) == ("spo2-low", "B1", "medium", "physiological")
    assert f"{SPO2}@{T0}" in ev.observation_ids
    assert run.annunciations[-1] == Annunciation(Priority.MEDIUM, Priority.MEDIUM, 1)
    assert run(obs(91, T0 + 11), T0 + 11) == []  # hysteresis: 91 is not past the clear limit 92
    assert run(obs(92, T0 + 12), T0 + 12) == ["cleared"]
    assert run.annunciations[-1] == Annunciation(None, None, 0)


def test_condition_that_ends_during_the_delay_never_alarms():
    run = Run(*low(for_s=10))
    run(obs(85, T0), T0)
    run(obs(95, T0 + 5), T0 + 5)
    assert run(Tick(), T0 + 20) == [] and run.events == []


def test_latching_alarm_stays_until_acknowledged():
    run = Run(*low(latching="true"))
    assert run(obs(85, T0), T0) == ["active"]
    assert run(obs(97, T0 + 1), T0 + 1) == ["latched"]
    assert run.annunciations[-1].audible == "medium"
    assert run(Tick(), T0 + 1000) == []
    assert run(Ack("B1"), T0 + 1001) == ["cleared"]


def test_acknowledge_silences_but_keeps_visual_until_condition_ends():
    run = Run(*low())
    run(obs(85, T0), T0)
    assert run(Ack("B1", "spo2-low"), T0 + 1) == ["acknowledged"]
    assert run.annunciations[-1] == Annunciation(None, Priority.MEDIUM, 1)
    assert run(obs(80, T0 + 2), T0 + 2) == []  # no duplicate raise
    assert run(obs(95, T0 + 3), T0 + 3) == ["cleared"]


def test_audio_pause_expires_after_the_configured_time():
    run = Run(*low())
    run(obs(85, T0), T0)
    assert run(Pause("B1"), T0 + 1) == ["audio_paused"]
    assert run.annunciations[-1].audible is None
    assert run(Tick(), T0 + 120) == []
    assert run(Tick(), T0 + 121) == ["active"]


def test_escalation_medium_to_high_once():
    run = Run(*low(escalate=60))
    run(obs(85, T0), T0)
    assert run(Tick(), T0 + 59) == []
    assert run(Tick(), T0 + 60) == ["escalated"]
    assert run.events[-1].priority == "high"
    assert run.annunciations[-1].audible == "high"
    assert run(Tick(), T0 + 500) == []


def test_acknowledged_alarm_does_not_escalate():
    run = Run(*low(escalate=60))
    run(obs(85, T0), T0)
    run(Ack(), T0 + 1)
    assert run(Tick(), T0 + 100) == []


def test_invalid_quality_is_not_evaluated():
    run = Run(*low())
    assert run(obs(50, T0, quality="invalid"), T0) == []


def test_beds_are_independent_and_bed_overrides_apply():
    run = Run(
        *engine(LOW.format(for_s=0, priority="high", latching="false", escalate=0) + "[rule.beds.B2]\nbelow = 80.0\n")
    )
    assert run(obs(85, T0, bed="B1"), T0) == ["active"]
    assert run(obs(85, T0, bed="B2"), T0) == []
    assert run(obs(79, T0 + 1, bed="B2"), T0 + 1) == ["active"]
    assert {e.bed_id for e in run.events} == {"B1", "B2"}


def test_rate_of_change_and_aggregate_windows():
    run = Run(
        *engine("""
[[rule]]
id = "falling"
kind = "rate"
metric = "MDC_PULS_OXIM_SAT_O2"
window_s = 60.0
fall_per_min = 6.0
[[rule]]
id = "mean-low"
kind = "aggregate"
metric = "MDC_PULS_OXIM_SAT_O2"
window_s = 30.0
function = "mean"
below = 93.0
""")
    )
    for i in range(61):  # 97 -> 91 over 60 s: 6 %/min
        run(obs(97 - i / 10, T0 + i), T0 + i)
    got = {(e.rule_id, e.state) for e in run.events}
    assert ("falling", "active") in got
    assert ("mean-low", "active") in got


def test_composite_all_of_within_span():
    run = Run(
        *engine("""
[[rule]]
id = "low"
kind = "limit"
metric = "MDC_PULS_OXIM_SAT_O2"
below = 90.0
[[rule]]
id = "fast"
kind = "limit"
metric = "MDC_PULS_OXIM_PULS_RATE"
above = 120.0
[[rule]]
id = "both"
kind = "composite"
all_of = ["low", "fast"]
within_s = 30.0
priority = "high"
""")
    )
    run(obs(85, T0), T0)
    run(obs(95, T0 + 1), T0 + 1)  # low ended, but was true within 30 s
    run(obs(130, T0 + 10, metric=PULSE), T0 + 10)
    assert ("both", "active") in [(e.rule_id, e.state) for e in run.events]
    run(obs(80, T0 + 11, metric=PULSE), T0 + 11)
    assert run(Tick(), T0 + 45) == ["cleared"]  # span ran out


def test_technical_alarm_with_delay_and_device_set():
    run = Run(*engine('[[rule]]\nid = "disc"\nkind = "technical"\nevent = "disconnected"\nfor_s = 5.0\n'))
    tech = lambda active, dev="d1": TechnicalEvent(dev, "disconnected", active=active, bed_id="B1")  # noqa: E731
    run(tech(True), T0)
    run(tech(True, "d2"), T0 + 1)
    assert run(Tick(), T0 + 5) == ["active"]
    assert run.events[-1].kind == "technical"
    assert run.events[-1].message == "disc: d1, d2"  # the alarm names the devices it stands for
    # d2 still down: the same alarm (same id) is said again, now naming d2 only.
    assert run(TechnicalEvent("d1", "connected", bed_id="B1"), T0 + 6) == ["active"]
    assert run.events[-1].message == "disc: d2"
    assert run.events[-1].alarm_id == run.events[-2].alarm_id
    assert run(tech(False, "d2"), T0 + 7) == ["cleared"]
    assert run.events[-1].message == "disc: d2"  # the clear says whose alarm ended


def test_one_shot_technical_event_latches():
    run = Run(*engine('[[rule]]\nid = "drop"\nkind = "technical"\nevent = "records_dropped"\nlatching = true\n'))
    assert run(TechnicalEvent("gateway", "records_dropped", count=5, bed_id="B1"), T0) == ["active", "latched"]


def test_device_reported_alarms_with_priority_mapping():
    run = Run(
        *engine("""
[[rule]]
id = "dev"
kind = "device"
unknown_priority = "low"
[rule.flags]
alarm_spo2_low = "high"
""")
    )
    assert run(obs(85, T0, flags={"alarm_spo2_low", "alarm_active", "alarm_0x008000"}), T0) == ["active", "active"]
    got = {(e.rule_id, e.priority) for e in run.events}
    assert got == {("dev:alarm_spo2_low@d1", "high"), ("dev:alarm_0x008000@d1", "low")}
    assert sorted(run(obs(95, T0 + 1), T0 + 1)) == ["cleared", "cleared"]


def test_device_graded_alarm_flags_keep_the_device_priority_unless_mapped():
    run = Run(
        *engine("""
[[rule]]
id = "dev"
kind = "device"
unknown_priority = "medium"
[rule.flags]
alarm_low_phys_0x4bb8_0x0001 = "high"
""")
    )
    flags = {"alarm_high_phys_0x4182_0x0002", "alarm_low_phys_0x4bb8_0x0001", "alarm_vendor_thing"}
    assert run(obs(85, T0, flags=flags), T0) == ["active", "active", "active"]
    got = {(e.rule_id.split("@")[0], e.priority) for e in run.events}
    assert got == {
        ("dev:alarm_high_phys_0x4182_0x0002", "high"),  # graded by the device
        ("dev:alarm_low_phys_0x4bb8_0x0001", "high"),  # the site's mapping wins
        ("dev:alarm_vendor_thing", "medium"),  # ungraded: unknown_priority
    }


def test_per_metric_dispatch_ignores_other_metrics():
    eng, _ = low()
    assert list(eng.by_metric) == [SPO2]


# -- properties -------------------------------------------------------------------
values = st.lists(st.tuples(st.floats(0.5, 5.0), st.integers(70, 100)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(samples=values, for_s=st.sampled_from([0.0, 3.0, 10.0]))
def test_no_alarm_before_condition_held_for_the_delay(samples, for_s):
    run = Run(*low(for_s=for_s))
    t = T0
    below_since = None
    for dt, value in samples:
        t += dt
        if value < 90 and below_since is None:
            below_since = t
        fired = "active" in run(obs(float(value), t), t) + run(Tick(), t)
        if fired:
            assert below_since is not None and t - below_since >= for_s
        if value >= 92:
            below_since = None


@settings(max_examples=200, deadline=None)
@given(samples=values)
def test_latched_alarm_stays_until_acknowledged(samples):
    run = Run(*low(latching="true"))
    t = T0
    run(obs(80.0, t), t)
    for dt, value in samples:
        t += dt
        run(obs(float(value), t), t)
        assert run.state.alarms[("B1", "spo2-low")].state.value in ("active", "latched")
    assert "cleared" not in [e.state for e in run.events]


@settings(max_examples=200, deadline=None)
@given(samples=values)
def test_cleared_alarm_never_reraises_without_a_new_condition(samples):
    run = Run(*low())
    t = T0
    prev = None
    for dt, value in samples:
        t += dt
        states = run(obs(float(value), t), t)
        if "active" in states:
            assert value < 90 and (prev is None or prev >= 90 or prev >= 92)
        prev = value


@settings(max_examples=100, deadline=None)
@given(ticks=st.lists(st.floats(0.1, 100), min_size=1, max_size=30))
def test_escalation_happens_exactly_once(ticks):
    run = Run(*low(escalate=60))
    t = T0
    run(obs(85, t), t)
    for dt in ticks:
        t += dt
        run(Tick(), t)
    escalations = [e for e in run.events if e.state == "escalated"]
    assert len(escalations) == (1 if t - T0 >= 60 else 0)


def brute_force(state):
    from rules.states import AlarmState

    rank = {"low": 1, "medium": 2, "high": 3}
    vis = [a for a in state.alarms.values() if a.state not in (AlarmState.INACTIVE, AlarmState.PENDING)]
    aud = [a for a in vis if a.state in (AlarmState.ACTIVE, AlarmState.LATCHED)]
    top = lambda xs: max(xs, key=lambda a: rank[a.priority]).priority if xs else None  # noqa: E731
    return Annunciation(top(aud), top(vis), len(vis))


ops = st.lists(
    st.one_of(
        st.tuples(st.just("obs"), st.integers(70, 100), st.sampled_from(["B1", "B2"])),
        st.tuples(st.just("ack"), st.just(0), st.sampled_from(["B1", "B2"])),
        st.tuples(st.just("pause"), st.just(0), st.sampled_from(["B1", "B2"])),
        st.tuples(st.just("tick"), st.just(0), st.just("")),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(sequence=ops, latching=st.sampled_from(["true", "false"]))
def test_incremental_annunciation_equals_a_full_recount(sequence, latching):
    run = Run(*low(for_s=2.0, latching=latching, escalate=5.0))
    t = T0
    for op, value, bed in sequence:
        t += 1.0
        if op == "obs":
            run(obs(float(value), t, bed=bed), t)
        elif op == "ack":
            run(Ack(bed), t)
        elif op == "pause":
            run(Pause(bed), t)
        else:
            run(Tick(), t)
        assert run.eng.annunciation(run.state) == brute_force(run.state)
