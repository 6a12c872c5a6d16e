"""Invalid is never valid: non-finite and implausible values hold the alarms they meet.

Runs the real normalizer, the shipped default rules and the alarm circuit, with
time passed in, as the gateway wires them.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.alarms import AlarmCircuit
from appliance.core.clock import MonotonicUTC
from appliance.core.model import (
    Observation,
    Reading,
    Record,
    RecordFormatError,
    TechnicalEvent,
    from_json_line,
    to_json_line,
)
from appliance.core.plausible import plausible_range
from appliance.normalize import DeviceContext, Normalizer
from drivers.registry import term_tables
from rules.engine import Tick
from rules.outputs import MemoryOutput
from rules.spec import DEFAULT_RULES_PATH, load_rules
from rules.states import AlarmState

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HL7_SPO2 = "150456^MDC_PULS_OXIM_SAT_O2"
# What an HL7 sender can put in OBX-5 that Python's float() accepts.
HOSTILE = [math.nan, math.inf, -math.inf, float("1e400"), -float("1e400"), 126.0, -5.0, 1e9]


class Bed:
    """Normalizer -> alarm circuit (default rules), fed as the gateway does."""

    def __init__(self, protocol: str = "hl7") -> None:
        self.now = T0
        self.normalizer = Normalizer()
        self.published: list[Record] = []
        self.output = MemoryOutput("buzzer")
        self.circuit = AlarmCircuit(load_rules(DEFAULT_RULES_PATH), [self.output], self.published.append, now=self._now)
        self.ctx = DeviceContext("mon1", protocol, "ICU-1", patient_id="p1")
        self.seq = 0

    def _now(self) -> float:
        return self.now.timestamp()

    def feed(self, value: float | None, label: str = HL7_SPO2, unit: str = "%") -> Observation:
        self.seq += 1
        reading = Reading("mon1", label, value, unit, seq=self.seq)
        obs, events = self.normalizer.normalize(reading, self.ctx, self.now)
        assert obs is not None
        records: list[Record] = [*events, obs]
        for record in records:
            self.published.append(record)
            self.circuit.on_record(record)
        return obs

    def advance(self, seconds: float) -> None:
        # Ticks as the alarm task makes them (coarser; the engine only needs order).
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.now = min(end, self.now + timedelta(seconds=0.5))
            self.circuit.evaluate(Tick())

    def states(self) -> dict[str, str]:
        return {a.key: a.state.value for a in self.circuit.state.alarms.values() if a.state is not AlarmState.INACTIVE}

    def technical(self, kind: str) -> list[TechnicalEvent]:
        return [r for r in self.published if isinstance(r, TechnicalEvent) and r.kind == kind]


@pytest.mark.parametrize("hostile", HOSTILE, ids=repr)
def test_a_non_number_or_implausible_value_neither_clears_nor_raises_an_alarm(hostile: float) -> None:
    bed = Bed()
    for _ in range(15):
        bed.feed(85.0)
        bed.advance(1)
    assert bed.states() == {"spo2-low": "active"}
    obs = bed.feed(hostile)
    assert obs.quality == "invalid"
    assert obs.flags & {"non_finite", "implausible"}
    # Held, not cleared, and no false desaturation in its place.
    assert bed.states() == {"spo2-low": "active", "invalid-value": "pending"}
    line = to_json_line(obs)
    assert "NaN" not in line and "Infinity" not in line
    json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}"))


def test_a_persisting_invalid_value_raises_the_technical_alarm_and_a_valid_one_ends_it() -> None:
    bed = Bed()
    bed.feed(97.0)
    for _ in range(12):
        bed.feed(math.nan)
        bed.advance(1)
    assert bed.states().get("invalid-value") == "active"
    events = bed.technical("invalid_value")
    assert len(events) == 1 and events[0].active and "not a number" in events[0].detail
    bed.feed(96.0)
    bed.advance(1)
    assert "invalid-value" not in bed.states()
    assert [e.active for e in bed.technical("invalid_value")] == [True, False]


def test_one_blip_of_noise_raises_nothing() -> None:
    bed = Bed()
    bed.feed(97.0)
    bed.feed(126.0)
    bed.advance(2)
    bed.feed(97.0)
    bed.advance(20)
    assert bed.states() == {}


def test_the_technical_condition_ends_only_when_every_invalid_metric_is_valid_again() -> None:
    bed = Bed()
    bed.feed(math.inf)
    bed.feed(900.0, "149530^MDC_PULS_OXIM_PULS_RATE", "/min")
    bed.feed(97.0)  # SpO2 fine again; the pulse rate is still implausible
    assert [e.active for e in bed.technical("invalid_value")] == [True]
    bed.feed(70.0, "149530^MDC_PULS_OXIM_PULS_RATE", "/min")
    assert [e.active for e in bed.technical("invalid_value")] == [True, False]


def test_a_value_the_device_marks_invalid_is_its_own_condition_not_ours() -> None:
    bed = Bed()
    bed.seq += 1
    reading = Reading("mon1", HL7_SPO2, 97.0, "%", flags=frozenset({"sensor_off"}), seq=bed.seq)
    obs, events = bed.normalizer.normalize(reading, bed.ctx, bed.now)
    assert obs is not None and obs.quality == "invalid" and events == []


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*HOSTILE, 0.0, 50.0, 79.9, 80.0, 85.0, 89.9, 90.0, 92.0, 100.0, 100.0001]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(values, st.floats(min_value=0, max_value=15)), min_size=1, max_size=40))
def test_alarm_state_is_changed_only_by_valid_in_range_values(steps: list[tuple[float, float]]) -> None:
    bed = Bed()
    for value, pause_s in steps:
        before = bed.states()
        obs = bed.feed(value)
        plausible = math.isfinite(value) and 0.0 <= value <= 100.0
        assert (obs.quality == "valid") == plausible
        physiological = {k: v for k, v in bed.states().items() if k.startswith("spo2")}
        if not plausible:
            assert physiological == {k: v for k, v in before.items() if k.startswith("spo2")}
        line = to_json_line(obs)
        assert "NaN" not in line and "Infinity" not in line
        bed.advance(pause_s)


def test_every_mapped_term_has_a_plausible_range_in_its_unit() -> None:
    # Terms whose unit is the device's own (HL7 carries it; glucose has two) are
    # checked in each unit they arrive in.
    missing = []
    for family, terms in term_tables().items():
        for label, term in terms.items():
            if term.unit and plausible_range(term.metric, term.unit) is None:
                missing.append(f"{family}:{label} {term.metric} [{term.unit}]")
    allowed = {"MDC_PULS_OXIM_PERF_REL"}  # IntelliVue sends it dimensionless ("1"): no agreed scale
    assert [m for m in missing if m.split()[1] not in allowed] == []
    for unit in ("mg/dL", "mmol/L"):
        assert plausible_range("MDC_CONC_GLU_CAPILLARY_PLASMA", unit) is not None


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_json_lines_never_carry_non_numbers(value: float) -> None:
    line = to_json_line(Reading("d", "SPO2", value, "%"))
    parsed: dict[str, Any] = json.loads(line, parse_constant=pytest.fail)
    assert parsed["value"] is None if not math.isfinite(value) else parsed["value"] == value


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_json_lines_with_non_numbers_are_refused(token: str) -> None:
    with pytest.raises(RecordFormatError, match="not a JSON number"):
        from_json_line(f'{{"type":"reading","device_id":"d","label":"x","value":{token},"unit":"%"}}')


def test_deeply_nested_json_is_refused_in_one_line() -> None:
    with pytest.raises(RecordFormatError, match="nested too deeply"):
        from_json_line("[" * 100_000)


def _hl7(value: str, n: int = 0) -> bytes:
    from drivers.hl7.mllp import frame

    return frame(
        (
            f"MSH|^~\\&|MON|ICU|||20261201080000+0000||ORU^R01^ORU_R01|M{n}|P|2.6|||AL|NE\r"
            "OBR|1||1|69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|||20261201080000+0000\r"
            f"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.1|{value}|262688^MDC_DIM_PERCENT^MDC|||||R\r"
        ).encode()
    )


@pytest.mark.parametrize("spelling", ["NaN", "nan", "inf", "-Infinity", "+inf", "9" * 400])
def test_hl7_non_numbers_are_accepted_as_invalid_rows_that_hold_the_alarm(spelling: str) -> None:
    from drivers.hl7.codec import Hl7Codec

    bed = Bed()
    codec = Hl7Codec("mon1", MonotonicUTC())
    for _ in range(15):
        bed.feed(85.0)
        bed.advance(1)
    for n in range(12):
        readings = [e for e in codec.feed(_hl7(spelling, n)) if isinstance(e, Reading)]
        assert len(readings) == 1 and readings[0].value is None and "non_finite" in readings[0].flags
        obs, events = bed.normalizer.normalize(readings[0], bed.ctx, bed.now)
        assert obs is not None and obs.quality == "invalid"
        records: list[Record] = [*events, obs]
        for record in records:
            bed.circuit.on_record(record)
        bed.advance(1)
    assert codec.acks[-1] == "CA"  # the rest of the message is used; the row is flagged
    assert bed.states() == {"spo2-low": "active", "invalid-value": "active"}


@pytest.mark.parametrize("spelling", ["1_000", "1e3", "9x7", "0x50", "85%"])
def test_hl7_values_that_are_not_hl7_numbers_put_the_message_in_error(spelling: str) -> None:
    from drivers.hl7.codec import Hl7Codec

    codec = Hl7Codec("mon1", MonotonicUTC())
    events = codec.feed(_hl7(spelling))
    assert not [e for e in events if isinstance(e, Reading)]
    assert codec.acks == ["CE"]


@pytest.mark.parametrize(("value", "unit"), [(0.75, "1"), (75.0, "/min"), (75.0, "kPa"), (75.0, "junk")])
def test_a_value_in_a_unit_that_cannot_be_converted_holds_the_alarm_and_is_not_dropped(value: float, unit: str) -> None:
    bed = Bed()
    for _ in range(15):
        bed.feed(85.0)
        bed.advance(1)
    for _ in range(12):
        obs = bed.feed(value, unit=unit)
        assert obs.value is None and obs.quality == "invalid" and "unit_not_convertible" in obs.flags
        bed.advance(1)
    assert bed.states() == {"spo2-low": "active", "invalid-value": "active"}


def test_an_unknown_code_under_a_known_name_gets_that_terms_unit_check() -> None:
    """The outside tester's bypass: 999999^MDC_PULS_OXIM_SAT_O2 in per-mille (850)
    was a valid SpO2 of 850 and cleared an active alarm."""
    bed = Bed()
    for _ in range(15):
        bed.feed(85.0)
        bed.advance(1)
    obs = bed.feed(850.0, label="999999^MDC_PULS_OXIM_SAT_O2", unit="‰")
    assert obs.metric == "MDC_PULS_OXIM_SAT_O2" and obs.code == 150456 and obs.quality == "invalid"
    assert bed.states()["spo2-low"] == "active"
    obs = bed.feed(850.0, label="999999^MDC_PULS_OXIM_SAT_O2", unit="%")
    assert obs.quality == "invalid" and "implausible" in obs.flags
