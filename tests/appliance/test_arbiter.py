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


def test_most_recent_valid_wins_and_invalid_never_displaces_valid():
    arb = Arbiter()
    arb.select(obs(97, 0, device="a"), 0)
    assert arb.select(obs(90, 1, device="b"), 1)
    assert arb.audit[-1].reason == "most recent valid"
    assert not arb.select(obs(None, 2, device="a", quality="invalid"), 2)
    assert arb.audit[-1].chosen_device == "b"


def test_audit_json_form():
    arb = Arbiter()
    arb.select(obs(97, 0, device="a"), 0)
    arb.select(obs(96, 1, device="b"), 1)
    d = arb.audit[-1].to_json_dict()
    assert d["type"] == "audit" and d["candidates"] == [["a", 97, "valid"], ["b", 96, "valid"]]
    assert datetime.fromtimestamp(d["time"], UTC)  # type: ignore[arg-type]
