"""Where observations went and how a backlog came back, decided over recorded events:
quarantined / charted per device, the offline backlog (once, original time, in order,
the store's figure) and the bounds on resent copies; each passes what held and fails,
naming why, what did not."""

from typing import Any

from hil.suite.check import Event, check, describe
from hil.suite.spec import Device, Expect, Scenario, Step

T0 = 1_000.0


def _scenario(*expects: Expect) -> Scenario:
    steps = (Step(1.0, "broker_down", name="down"), Step(5.0, "broker_up", name="up"))
    return Scenario("s", 10.0, (Device("d", "masimo", "B"), Device("x", "nonin", "B")), steps, expects)


def _steps() -> list[Event]:
    return [
        Event(T0 + 1, "bench", "step", {"name": "down", "action": "broker_down", "trigger_t": T0 + 1}),
        Event(T0 + 4.9, "gateway", "store", {"bytes": 2 * 2**20}),
        Event(T0 + 5, "bench", "step", {"name": "up", "action": "broker_up", "trigger_t": T0 + 5}),
    ]


def _obs(source: str, obs_id: str, received: float, arrived: float | None = None, **kw: Any) -> Event:
    data = {"obs_id": obs_id, "device_id": "d", "time": f"t{obs_id}", "received_t": received, **kw}
    return Event(received if arrived is None else arrived, source, "obs", data)


def test_an_unpaired_device_is_quarantined_only_while_a_paired_one_is_charted() -> None:
    quarantined, charted = Expect("quarantined", device="x"), Expect("charted", device="d")
    events = [
        _obs("broker", "1", T0 + 1, device_id="x", plane="quarantine", patient_id=None),
        _obs("broker", "2", T0 + 1, device_id="d", plane="telemetry", patient_id="MRN-1"),
    ]
    q, c = check(_scenario(quarantined, charted), events, T0)
    assert q.ok and "quarantine topic without a patient" in q.detail
    assert c.ok and "'MRN-1'" in c.detail
    leaked = [*events, _obs("broker", "3", T0 + 2, device_id="x", plane="telemetry", patient_id=None)]
    (q,) = check(_scenario(quarantined), leaked, T0)
    assert not q.ok and "1 of 2" in q.detail and "telemetry/None" in q.detail
    unpaired = [_obs("broker", "4", T0 + 1, plane="telemetry", patient_id=None)]
    (c,) = check(_scenario(charted), unpaired, T0)
    assert not c.ok
    (none,) = check(_scenario(quarantined), [], T0)
    assert not none.ok and "no observation of x" in none.detail


def _offline() -> list[Event]:
    """Three observations recorded while the broker was down, one before and one after."""
    local = [_obs("local", str(i), T0 + t) for i, t in enumerate((0.5, 2.0, 3.0, 4.0, 6.0))]
    return [*_steps(), *local]


def test_the_backlog_arrives_once_with_its_time_in_order_and_the_store_figure_is_reported() -> None:
    exp = Expect("backlog", after="down", until="up")
    arrived = [_obs("broker", str(i), T0 + t, T0 + 5.5 + i / 10) for i, t in enumerate((0.5, 2.0, 3.0, 4.0, 6.0))]
    resent = _obs("broker", "2", T0 + 3.0, T0 + 5.9)  # a resend later: dedupe keeps the first copy
    (out,) = check(_scenario(exp), [*_offline(), *arrived, resent], T0)
    assert out.ok, out.detail
    assert "all 3 offline observations" in out.detail and "2.00 MiB on disk" in out.detail
    # the last backlog arrival (5.8) minus the broker's restart (the store figure, 4.9)
    assert out.latency_ms is not None and abs(out.latency_ms - 900) < 1


def test_a_lost_a_re_timed_or_a_reordered_backlog_fails() -> None:
    exp = Expect("backlog", after="down", until="up")
    base = _offline()
    lost = [_obs("broker", "1", T0 + 2.0, T0 + 6), _obs("broker", "2", T0 + 3.0, T0 + 6.1)]
    (out,) = check(_scenario(exp), [*base, *lost], T0)
    assert not out.ok and "1 of 3 offline observations missing" in out.detail
    moved = [*lost, _obs("broker", "3", T0 + 4.0, T0 + 6.2, time="another")]
    (out,) = check(_scenario(exp), [*base, *moved], T0)
    assert not out.ok and "1 with another time" in out.detail
    swapped = [_obs("broker", "2", T0 + 3.0, T0 + 6), _obs("broker", "1", T0 + 2.0, T0 + 6.1)]
    (out,) = check(_scenario(exp), [*base, *swapped, _obs("broker", "3", T0 + 4.0, T0 + 6.2)], T0)
    assert not out.ok and "out of order for ['d']" in out.detail
    (out,) = check(_scenario(exp), _steps(), T0)
    assert not out.ok and "recorded 0 observations during the outage" in out.detail
    short = Expect("backlog", after="down", until="up", min_count=4)  # the volume the suite promised
    (out,) = check(_scenario(short), [*base, *lost, _obs("broker", "3", T0 + 4.0, T0 + 6.2)], T0)
    assert not out.ok and "recorded 3 observations during the outage, wanted 4" in out.detail


def test_live_data_overtaking_the_backlog_after_the_broker_restarted_is_not_disorder() -> None:
    """The broker restarts at the store figure (T0 + 4.9); a reading at T0 + 4.95 is live
    and may come before the backlog, by design (alarms first, then live, then backlog)."""
    exp = Expect("backlog", after="down", until="up")
    events = [*_steps(), _obs("local", "a", T0 + 2.0), _obs("local", "live", T0 + 4.95)]
    arrived = [_obs("broker", "live", T0 + 4.95, T0 + 5.0), _obs("broker", "a", T0 + 2.0, T0 + 5.1)]
    (out,) = check(_scenario(exp), [*events, *arrived], T0)
    assert out.ok and "all 1 offline" in out.detail


def test_resend_bounds_fail_a_fault_that_caused_none_and_a_gateway_that_resends_everything() -> None:
    exp = Expect("no_loss", resends_at_least=1, resends_at_most=2)
    local = [_obs("local", str(i), T0 + i) for i in range(5)]

    def copies(n: int) -> list[Event]:  # each arrival its own record, as the consumer decodes it
        return [_obs("broker", str(i), T0 + i) for i in range(n)]

    (none,) = check(_scenario(exp), [*local, *copies(5)], T0)
    assert not none.ok and "0 resent copies" in none.detail
    (some,) = check(_scenario(exp), [*local, *copies(5), *copies(2)], T0)
    assert some.ok and "2 resends, identical" in some.detail
    (every,) = check(_scenario(exp), [*local, *copies(5), *copies(5)], T0)
    assert not every.ok and "5 resent copies" in every.detail and "at most 2" in every.detail
    assert describe(exp) == "no_loss resends >= 1 resends <= 2"
