from datetime import UTC, datetime
from typing import Any

import pytest

from appliance.core.model import (
    AlarmEvent,
    Observation,
    Reading,
    RecordFormatError,
    TechnicalEvent,
    from_json_line,
    to_json_dict,
    to_json_line,
)
from appliance.core.vocab import AlarmEventState, Priority

T = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def obs(**kw):
    base: dict[str, Any] = dict(
        obs_id="abc",
        metric="MDC_PULS_OXIM_SAT_O2",
        code=150456,
        value=97.0,
        unit="%",
        time=T,
        received=T,
        quality="valid",
        device_id="d1",
        bed_id="ICU-1",
        patient_id=None,
    )
    base.update(kw)
    return Observation(**base)


def test_records_are_frozen_and_slotted():
    o = obs()
    with pytest.raises(AttributeError):
        o.value = 1.0  # type: ignore[misc,unused-ignore]
    assert not hasattr(o, "__dict__")


def test_observation_json_form_uses_rfc3339_z_and_integer_code():
    d = to_json_dict(obs(flags=frozenset({"b", "a"})))
    assert d["type"] == "observation"
    assert d["time"] == "2026-01-02T03:04:05.678Z"
    assert d["code"] == 150456 and isinstance(d["code"], int)
    assert d["flags"] == ["a", "b"]
    assert d["patient_id"] is None


@pytest.mark.parametrize(
    "record",
    [
        obs(flags=frozenset({"low_perfusion"}), quarantine=True),
        Reading("d1", "SPO2", None, "%", device_time=datetime(2016, 2, 22, 22, 47, 45), seq=3),
        TechnicalEvent("d1", "stale", active=False, detail="x", time=T, bed_id="ICU-1"),
        AlarmEvent(
            "a1",
            "spo2-low",
            "ICU-1",
            Priority.HIGH,
            "physiological",
            AlarmEventState.ACTIVE,
            T,
            ("o1", "o2"),
            "SpO2 low",
        ),
    ],
)
def test_json_line_round_trip(record):
    assert from_json_line(to_json_line(record)) == record


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"type":"nope"}', "unknown 'type'"),
        ('{"type":"technical","device_id":"d","kind":"x","bogus":1}', "unknown key 'bogus'"),
        ('{"type":"technical","device_id":"d","kind":"x","time":"yesterday"}', "bad time"),
        ('{"type":"technical","kind":"x"}', "device_id"),
    ],
)
def test_bad_json_lines_raise_record_format_error(line, message):
    with pytest.raises(RecordFormatError, match=message):
        from_json_line(line)
