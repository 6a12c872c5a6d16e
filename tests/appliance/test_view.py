"""The operator's view (appliance/view.py, appliance/display.py) and the alarm texts
it shows (the device's own words, the devices a technical alarm stands for)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from appliance import display
from appliance.alarms import AlarmCircuit
from appliance.core.model import Observation, TechnicalEvent
from appliance.core.vocab import Quality
from appliance.view import GATEWAY_SCOPE, MAX_EVENT_GROUPS, STALE_AFTER_S, BedsideView, DeviceInfo
from rules.outputs import MemoryOutput
from rules.spec import parse_rules
from tests.rules.test_engine import obs

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def observation(metric: str, value: float | None, unit: str, device: str = "m1", at: datetime = T0) -> Observation:
    return Observation("id", metric, 0, value, unit, at, at, Quality.VALID, device, "ICU-1", None)


def test_display_units_are_what_a_clinician_reads() -> None:
    assert display.show("MDC_PRESS_BLD_NONINV_SYS", 118.0, "mm[Hg]") == ("118", "mmHg")
    assert display.show("MDC_VENT_PRESS_AWAY_END_EXP_POS", 5.0, "cm[H2O]") == ("5", "cmH2O")
    assert display.show("MDC_TEMP", 36.94, "Cel") == ("36.9", "°C")
    assert display.show("MDC_PULS_OXIM_SAT_O2", None, "%") == ("--", "%")
    assert display.show("MDC_PULS_OXIM_SAT_O2", float("nan"), "%") == ("--", "%")
    assert display.display_unit("{breaths}/min") == "/min"


@given(st.floats(min_value=0, max_value=100, allow_nan=False), st.floats(min_value=0, max_value=100, allow_nan=False))
def test_one_metric_has_one_number_of_decimals_from_every_device(a: float, b: float) -> None:
    # PI was 2.11 from one oximeter and 2.1 from another: now the metric decides.
    for metric in ("MDC_PULS_OXIM_PERF_REL", "MDC_PULS_OXIM_SAT_O2", "MDC_TEMP", "MDC_X_UNKNOWN"):
        x, y = display.show(metric, a, "%")[0], display.show(metric, b, "%")[0]
        assert len(x.partition(".")[2]) == len(y.partition(".")[2])


def test_values_stale_and_link_states_follow_the_devices_own_events() -> None:
    view = BedsideView([DeviceInfo("m1", "masimo", "ICU-1"), DeviceInfo("v1", "medibus", "ICU-1")], "gw-1")
    view(observation("MDC_PULS_OXIM_SAT_O2", 97, "%"))
    view(observation("MDC_VENT_PRESS_AWAY_END_EXP_POS", 5, "cm[H2O]", device="v1"))
    snap = view.snapshot(T0 + timedelta(seconds=1), [])
    (bed,) = snap["beds"]
    m1, v1 = bed["devices"]
    assert m1["link"] == "ok" and m1["values"][0]["stale"] is False
    assert v1["values"][0]["label"] == "PEEP" and v1["values"][0]["unit"] == "cmH2O"
    view(TechnicalEvent("m1", "disconnected", detail="cable", time=T0, bed_id="ICU-1"))
    m1 = view.snapshot(T0 + timedelta(seconds=2), [])["beds"][0]["devices"][0]
    assert m1["link"] == "disconnected" and m1["values"][0]["stale"] is True  # last value kept, marked
    view(TechnicalEvent("m1", "connected", time=T0, bed_id="ICU-1"))
    later = T0 + timedelta(seconds=STALE_AFTER_S + 1)
    snap = view.snapshot(later, [])
    m1 = snap["beds"][0]["devices"][0]
    assert m1["link"] == "ok" and m1["values"][0]["stale"] is True and m1["values"][0]["age_s"] > STALE_AFTER_S
    (group,) = snap["events"]
    assert group["kind"] == "disconnected" and group["active"] is False  # the reconnect ended it


def test_events_are_grouped_per_device_and_kind_and_the_gateways_own_are_apart() -> None:
    view = BedsideView([DeviceInfo("m1", "masimo", "ICU-1")])
    for i in range(500):
        view(TechnicalEvent("m1", "bad_frame", count=i, detail="checksum", time=T0, bed_id="ICU-1"))
    view(TechnicalEvent("gateway", "uplink_down", detail="broker", time=T0, bed_id="ICU-1"))
    events = view.snapshot(T0, [])["events"]
    assert [(e["scope"], e["device_id"], e["kind"], e["count"]) for e in events] == [
        (GATEWAY_SCOPE, "gateway", "uplink_down", 1),
        ("ICU-1", "m1", "bad_frame", 500),
    ]


KINDS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8)


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "gateway", "zz"]), KINDS), max_size=300))
def test_the_view_stays_bounded_whatever_arrives(events: list[tuple[str, str]]) -> None:
    view = BedsideView([DeviceInfo("a", "masimo", "B1")])
    for device, kind in events:
        view(TechnicalEvent(device, kind, time=T0, bed_id="B1"))
    snap = view.snapshot(T0, [])
    assert len(snap["events"]) <= MAX_EVENT_GROUPS
    assert len({(e["device_id"], e["kind"]) for e in snap["events"]}) == len(snap["events"])


DEVICE_RULES = parse_rules(
    """
[[rule]]
id = "device-alarm"
kind = "device"
priority = "medium"
unknown_priority = "medium"
message = "Alarm reported by the device"
[[rule]]
id = "device-disconnected"
kind = "technical"
event = "disconnected"
priority = "low"
message = "Device disconnected"
"""
)


def test_a_device_alarm_says_what_the_device_said_and_a_technical_alarm_names_its_devices() -> None:
    published: list[object] = []
    now = T0.timestamp()
    circuit = AlarmCircuit(DEVICE_RULES, [MemoryOutput()], published.append, now=lambda: now)
    flag = "alarm_high_phys_0x4bb8_0x0002"
    circuit.describe("mon-1", [(flag, "**Desat   ")])
    circuit.on_record(obs(80.0, now, flags=(flag,), device="mon-1"))
    (listed,) = circuit.alarms()
    assert listed["message"] == "**Desat" and listed["device_id"] == "mon-1" and listed["onset"]
    assert any(getattr(e, "message", "") == "**Desat" for e in published)
    for dev in ("p1", "p2"):
        circuit.on_record(TechnicalEvent(dev, "disconnected", bed_id="B1"))
    tech = next(a for a in circuit.alarms() if a["rule_id"] == "device-disconnected")
    assert tech["message"] == "Device disconnected: p1, p2"


HOSTILE = [
    "[/]",
    "[bold red]FAKE[/bold red]",
    "\x1b[2J\x1b]0;owned\x07",
    "[link=http://x]y[/link]",
    "a\rb",
    "\u009b31m",
]


@given(st.lists(st.sampled_from(HOSTILE) | st.text(max_size=20), min_size=6, max_size=6))
def test_device_strings_cannot_break_or_restyle_the_terminal(texts: list[str]) -> None:
    from appliance.view_text import to_text

    msg, bed, dev, scope, detail, kind = texts
    view = BedsideView([DeviceInfo(dev or "d", "p", bed or "b")])
    view(TechnicalEvent(dev or "d", kind or "k", detail=detail, time=T0, bed_id=bed))
    alarm = {"bed_id": bed, "priority": "high", "state": "active", "message": msg, "onset": None, "device_id": dev}
    snap = view.snapshot(T0, [alarm], {"store": scope})
    out = to_text(snap, color=False, width=200)
    assert "\x1b" not in out and "\r" not in out and "\x9b" not in out
    if msg.isprintable() and msg.strip():
        assert msg.strip()[:10] in out.replace("\n", "")  # shown literally, never as markup
