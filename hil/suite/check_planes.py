"""Expectations on where observations went and how a backlog came back: pure, over the
recorded events (see hil/suite/check.py for what an `Event` is).

- `quarantined`: every observation of an unpaired device is on the quarantine topic
  with no patient (never on telemetry, so it reaches no chart);
- `charted`: every observation of a paired device is on telemetry with its patient;
- `backlog`: the observations the gateway recorded during an outage (from the step
  `after` to the broker's restart in the step `until`) are all at the broker once after
  dedupe by obs_id, each with its original device time, in order per device (the
  backlog drains oldest first; live data after the reconnect may overtake it, by
  design); the detail reports the volume, the drain time and the store's disk figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from hil.suite.check import Event, Outcome, trigger_times
from hil.suite.spec import Expect

__all__ = ["KINDS", "decide"]

KINDS: Final = ("quarantined", "charted", "backlog")


def _device_obs(exp: Expect, events: Sequence[Event]) -> list[dict[str, Any]]:
    return [
        e.data for e in events if e.source == "broker" and e.kind == "obs" and e.data.get("device_id") == exp.device
    ]


def _plane(exp: Expect, events: Sequence[Event], plane: str) -> Outcome:
    seen = _device_obs(exp, events)
    if not seen:
        return Outcome(exp, False, f"no observation of {exp.device} at the broker")
    if plane == "quarantine":
        wrong = [o for o in seen if o.get("plane") != "quarantine" or o.get("patient_id")]
        what = "on the quarantine topic without a patient"
    else:
        wrong = [o for o in seen if o.get("plane") != "telemetry" or not o.get("patient_id")]
        what = f"on telemetry with patient {seen[0].get('patient_id')!r}"
    if wrong:
        where = sorted({f"{o.get('plane')}/{o.get('patient_id')}" for o in wrong})
        return Outcome(exp, False, f"{len(wrong)} of {len(seen)} observations not {what} (topic/patient: {where})")
    return Outcome(exp, True, f"all {len(seen)} observations {what}")


def _out_of_order(first: dict[str, Event], ids: set[str]) -> list[str]:
    """Devices whose backlog arrived out of receive order (first copies, arrival order)."""
    last: dict[str, float] = {}
    bad: set[str] = set()
    for obs_id, event in first.items():  # insertion order = arrival order
        if obs_id not in ids:
            continue
        device, received = str(event.data.get("device_id")), float(event.data["received_t"])
        if received < last.get(device, received):
            bad.add(device)
        last[device] = received
    return sorted(bad)


def _backlog(exp: Expect, events: Sequence[Event]) -> Outcome:
    triggers = trigger_times(events)
    if exp.until not in triggers:
        return Outcome(exp, False, f"step {exp.until!r} was never played")
    t0, t1 = triggers[exp.after], triggers[exp.until]
    # The outage ends when the broker starts (the store's figure is taken just before),
    # not at the step's trigger: that waits for the bench's consumer too, and the gateway
    # may be connected and sending live data (ahead of the backlog, by design) by then.
    stores = [e for e in events if e.kind == "store" and t0 <= e.t <= t1]
    t1 = stores[-1].t if stores else t1
    offline = {e.data["obs_id"]: e.data for e in events if e.source == "local" and e.kind == "obs" and t0 <= e.t <= t1}
    if len(offline) < max(1, exp.min_count):
        return Outcome(
            exp,
            False,
            f"the gateway recorded {len(offline)} observations during the outage, wanted {exp.min_count:.0f}",
        )
    first: dict[str, Event] = {}
    for e in events:
        if e.source == "broker" and e.kind == "obs":
            first.setdefault(e.data["obs_id"], e)
    missing = set(offline) - set(first)
    moved = [i for i in offline if i in first and first[i].data.get("time") != offline[i].get("time")]
    unordered = _out_of_order(first, set(offline))
    if missing or moved or unordered:
        return Outcome(
            exp,
            False,
            f"{len(missing)} of {len(offline)} offline observations missing at the broker, "
            f"{len(moved)} with another time, out of order for {unordered or 'no device'}",
        )
    drain_s = max(first[i].t for i in offline) - t1
    size = stores[-1].data["bytes"] if stores else 0
    disk = f"; store {size / 2**20:.2f} MiB on disk ({size / len(offline):.0f} B/obs)" if stores else ""
    return Outcome(
        exp,
        True,
        f"all {len(offline)} offline observations at the broker once after dedupe, original times, "
        f"in order per device; drained {drain_s:.1f} s after the broker's restart{disk}",
        drain_s * 1000,
    )


def decide(exp: Expect, events: Sequence[Event]) -> Outcome:
    if exp.kind == "quarantined":
        return _plane(exp, events, "quarantine")
    if exp.kind == "charted":
        return _plane(exp, events, "telemetry")
    return _backlog(exp, events)
