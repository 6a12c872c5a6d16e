from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance.core.model import Reading
from appliance.normalize import DeviceContext, Normalizer, quality_of
from drivers.registry import term_tables

RECEIVED = datetime(2026, 7, 1, 10, 0, 5, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def ctx(**kw):
    base: dict[str, Any] = dict(device_id="m1", protocol="masimo", bed_id="ICU-1", tz=BERLIN)
    base.update(kw)
    return DeviceContext(**base)


def reading(label="SPO2", value=97.0, device_time=datetime(2026, 7, 1, 12, 0, 3), flags=(), seq=1, unit="%"):
    return Reading("m1", label, value, unit, device_time=device_time, flags=frozenset(flags), seq=seq)


def test_maps_label_to_mdc_and_ucum_and_converts_device_zone_to_utc():
    obs, events = Normalizer().normalize(reading(), ctx(), RECEIVED)
    assert obs is not None and events == []
    assert (obs.metric, obs.code, obs.unit, obs.value) == ("MDC_PULS_OXIM_SAT_O2", 150456, "%", 97.0)
    # 12:00:03 in Berlin summer time is 10:00:03 UTC.
    assert obs.time == datetime(2026, 7, 1, 10, 0, 3, tzinfo=UTC)
    assert obs.received == RECEIVED
    assert obs.quality == "valid"
    assert obs.bed_id == "ICU-1"


def test_pulse_rate_unit_is_ucum_per_minute():
    obs, _ = Normalizer().normalize(reading("BPM", 64.0, unit="1/min"), ctx(), RECEIVED)
    assert obs is not None and (obs.code, obs.unit) == (149530, "/min")


def test_device_units_are_converted_to_the_term_unit_or_refused():
    ivue = DeviceContext("m1", "intellivue", "B1")
    norm = Normalizer()
    kpa, _ = norm.normalize(reading("0x4A05", 16.0, unit="kPa"), ivue, RECEIVED)
    assert kpa is not None and (kpa.metric, kpa.unit, kpa.value) == ("MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]", 120.01)
    fahrenheit, _ = norm.normalize(reading("0x4B48", 98.6, unit="[degF]"), ivue, RECEIVED)
    assert fahrenheit is not None and (fahrenheit.unit, fahrenheit.value) == ("Cel", 37.0)
    # etCO2 in vol-% cannot become mmHg without the barometric pressure: not guessed,
    # and not dropped silently: an invalid observation without a value, counted, and
    # the invalid-measurement condition raised.
    refused, events = norm.normalize(reading("0x50B0", 5.1, unit="%"), ivue, RECEIVED)
    assert refused is not None and refused.value is None and refused.quality == "invalid"
    assert "unit_not_convertible" in refused.flags and norm.unconvertible["intellivue:0x50B0 in %"] == 1
    assert [(e.kind, e.active) for e in events] == [("invalid_value", True)]


def test_every_table_row_cites_a_source_and_uses_partition_two():
    for family in term_tables().values():
        for term in family.values():
            assert term.source
            assert term.code // 65536 == 2
            assert term.metric.startswith("MDC_")


def test_unmapped_labels_are_counted_not_invented():
    n = Normalizer()
    obs, _ = n.normalize(reading("PVI", 14.0), ctx(), RECEIVED)
    assert obs is None
    assert n.unmapped == {"masimo:PVI": 1}


@pytest.mark.parametrize(
    ("value", "flags", "quality"),
    [
        (97.0, (), "valid"),
        (None, (), "invalid"),
        (97.0, ("sensor_off",), "invalid"),
        (97.0, ("no_sensor",), "invalid"),
        (97.0, ("low_perfusion",), "questionable"),
        (97.0, ("artifact",), "questionable"),
        (97.0, ("low_signal_iq",), "questionable"),
        (97.0, ("low_perfusion", "sensor_off"), "invalid"),
        (97.0, ("masimo_set", "alarm_silenced"), "valid"),
    ],
)
def test_quality_from_flags(value, flags, quality):
    assert quality_of(value, frozenset(flags)) == quality


def test_unpaired_device_is_quarantined_and_paired_is_not():
    obs, _ = Normalizer().normalize(reading(), ctx(), RECEIVED)
    assert obs is not None and obs.patient_id is None and obs.quarantine
    obs, _ = Normalizer().normalize(reading(), ctx(patient_id="P42"), RECEIVED)
    assert obs is not None and obs.patient_id == "P42" and not obs.quarantine


def test_obs_id_is_deterministic_and_distinguishes_readings():
    a, _ = Normalizer().normalize(reading(), ctx(), RECEIVED)
    b, _ = Normalizer().normalize(reading(), ctx(), RECEIVED + timedelta(hours=1))
    c, _ = Normalizer().normalize(reading(seq=2), ctx(), RECEIVED)
    d, _ = Normalizer().normalize(reading(), ctx(boot_id="other"), RECEIVED)
    assert a and b and c and d
    assert a.obs_id == b.obs_id
    assert len({a.obs_id, c.obs_id, d.obs_id}) == 3


def test_clock_skew_beyond_bound_uses_receive_time_and_emits_one_event_each_way():
    n = Normalizer(max_clock_skew_s=60)
    late = datetime(2026, 7, 1, 12, 10, 0)  # 10 min ahead of the gateway
    obs, events = n.normalize(reading(device_time=late), ctx(), RECEIVED)
    assert obs is not None and obs.time == RECEIVED and "clock_skew" in obs.flags
    assert obs.quality == "questionable"
    assert [(e.kind, e.active) for e in events] == [("clock_skew", True)]
    assert n.skew_s("m1") == pytest.approx(595)
    _, events = n.normalize(reading(device_time=late, seq=2), ctx(), RECEIVED)
    assert events == []
    obs, events = n.normalize(reading(device_time=datetime(2026, 7, 1, 12, 0, 4), seq=3), ctx(), RECEIVED)
    assert obs is not None and obs.time == datetime(2026, 7, 1, 10, 0, 4, tzinfo=UTC)
    assert [(e.kind, e.active) for e in events] == [("clock_skew", False)]


def test_no_device_time_means_receive_time():
    obs, _ = Normalizer().normalize(reading(device_time=None), ctx(protocol="nonin-2"), RECEIVED)
    assert obs is not None and obs.time == RECEIVED


def test_nonin_variants_share_the_family_table():
    r = Reading("n1", "HR", 72.0, "1/min")
    obs, _ = Normalizer().normalize(r, ctx(device_id="n1", protocol="nonin-7"), RECEIVED)
    assert obs is not None and obs.metric == "MDC_PULS_OXIM_PULS_RATE"
