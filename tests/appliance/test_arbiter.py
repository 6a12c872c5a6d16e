from datetime import UTC, datetime
from typing import Any

from appliance.arbiter import Arbiter
from tests.rules.test_engine import obs


def test_single_source_passes_without_audit():
    arb = Arbiter()
    assert arb.select(obs(95, 0), 0)
    assert not arb.audit


def test_precedence_list_wins_while_fresh_then_falls_back():
    audits: list[Any] = []
    arb = Arbiter({"MDC_PULS_OXIM_SAT_O2": ["monitor"]}, fresh_s=10, on_audit=audits.append)
    assert arb.select(obs(97, 0, device="monitor"), 0)
    assert not arb.select(obs(88, 1, device="spot"), 1)
    rec = arb.audit[-1]
    assert (rec.chosen_device, rec.reason) == ("monitor", "precedence")
    assert rec.candidates == (("monitor", 97, "valid"), ("spot", 88, "valid"))
    assert audits == list(arb.audit)
    # The monitor goes quiet: after fresh_s the spot-check device is the source.
    assert arb.select(obs(88, 20, device="spot"), 20)


def test_the_current_source_stays_then_most_recent_valid_and_invalid_never_displaces_valid():
    arb = Arbiter()
    arb.select(obs(97, 0, device="a"), 0)
    assert not arb.select(obs(90, 1, device="b"), 1)  # a is fresh and valid: the rules keep seeing a
    assert (arb.audit[-1].chosen_device, arb.audit[-1].reason) == ("a", "current source fresh and valid")
    assert not arb.select(obs(None, 2, device="a", quality="invalid"), 2)
    assert (arb.audit[-1].chosen_device, arb.audit[-1].reason) == ("b", "most recent valid")
    assert arb.select(obs(91, 3, device="b"), 3)
    # a is valid again but b is now the fresh, valid source: no switch back and forth.
    assert not arb.select(obs(97, 4, device="a"), 4)


def test_an_unchanged_decision_costs_no_audit_record():
    arb = Arbiter()
    for i in range(1000):
        arb.select(obs(97, i * 0.1, device="a" if i % 2 else "b"), i * 0.1)
    assert len(arb.audit) == 1


def test_audit_json_form():
    arb = Arbiter()
    arb.select(obs(97, 0, device="a"), 0)
    arb.select(obs(96, 1, device="b"), 1)
    d = arb.audit[-1].to_json_dict()
    assert d["type"] == "audit" and d["candidates"] == [["a", 97, "valid"], ["b", 96, "valid"]]
    assert datetime.fromtimestamp(d["time"], UTC)  # type: ignore[arg-type]
