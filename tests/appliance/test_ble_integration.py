"""BLE in the appliance: config, the stored-record cursor in the registry, the normalizer's
handling of stored records, `bedside decode --protocol ble-*`, and a whole gateway reading
simulated BLE sensors through bleak."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from appliance.config import ConfigError, parse_config
from appliance.core.model import Observation, Reading, Record, TechnicalEvent
from appliance.gateway import Gateway
from appliance.normalize import DeviceContext, Normalizer
from appliance.registry import Registry
from hil.ble_radio import SimRadio
from hil.ble_sim import GlucoseSim, HeartRateSim
from rules.outputs import MemoryOutput
from tests.integration.helpers import until

BASE = '[gateway]\nbed_id = "ICU-9"\nregistry_path = "{reg}"\n'
BENCH = BASE + "allow_any_ble = true\n"  # ble:any: bench only


def ble_device(dev_id, protocol, port, extra=""):
    return f'[[devices]]\nid = "{dev_id}"\nprotocol = "{protocol}"\nport = "{port}"\n{extra}'


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (ble_device("h", "ble-heart-rate", "/dev/ttyUSB0"), 'devices["h"].port: BLE devices'),
        (ble_device("h", "masimo", "ble:any"), 'devices["h"].port: BLE devices'),
        (ble_device("h", "ble-heart-rate", "ble:AA:BB"), "devices[\"h\"].port: 'AA:BB' is not a Bluetooth address"),
        (ble_device("h", "ble-heart-rate", "ble:any", "low_battery_pct = 101\n"), 'devices["h"].low_battery_pct'),
        # The first advertiser in range may be the next bed's sensor: refused unless the site says bench.
        (ble_device("h", "ble-heart-rate", "ble:any"), "port: 'ble:any' takes the first device in range"),
    ],
)
def test_ble_device_config_errors_name_the_key(tmp_path, device, message):
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.format(reg=tmp_path / "r.json") + device, "g.toml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_ble_devices_by_address_or_service_are_accepted(tmp_path):
    text = BENCH.format(reg=tmp_path / "r.json")
    text += ble_device("h", "ble-heart-rate", "ble:C0:FF:EE:00:00:01") + ble_device("g", "ble-glucose", "ble:any")
    config = parse_config(text, "g.toml")
    assert [d.protocol for d in config.devices] == ["ble-heart-rate", "ble-glucose"]


def test_registry_keeps_record_cursors_beside_pairings(tmp_path):
    registry = Registry(tmp_path / "r.json")
    assert registry.last_record("g") is None
    registry.pair("g", "ICU-9", "patient-1")
    registry.set_last_record("g", 41)
    registry.set_last_record("g", 42)
    fresh = Registry(tmp_path / "r.json")
    assert fresh.last_record("g") == 42
    assert [p.device_id for p in fresh.list()] == ["g"]


RECEIVED = datetime(2026, 7, 1, 10, 0, 0, tzinfo=UTC)


def test_stored_records_keep_their_old_time_and_do_not_count_as_skew():
    norm = Normalizer(max_clock_skew_s=60)
    ctx = DeviceContext("g", "ble-glucose", "ICU-9")
    old = datetime(2026, 7, 1, 4, 0, 0)  # six hours before it arrived
    obs, events = norm.normalize(Reading("g", "GLU_CAP_WB", 95.0, "mg/dL", old, frozenset({"stored"})), ctx, RECEIVED)
    assert obs is not None and events == []
    assert obs.time == old.replace(tzinfo=UTC)
    assert "clock_skew" not in obs.flags
    assert (obs.metric, obs.code, obs.unit) == ("MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", 160184, "mg/dL")
    future = RECEIVED.replace(tzinfo=None) + timedelta(hours=1)
    obs, _ = norm.normalize(Reading("g", "GLU_CAP_WB", 95.0, "mg/dL", future, frozenset({"stored"})), ctx, RECEIVED)
    assert obs is not None and obs.time == RECEIVED and "clock_skew" in obs.flags
    # A meter is episodic: a value it sends hours after measuring keeps its time, flagged late.
    late, events = norm.normalize(Reading("g", "GLU_CAP_WB", 95.0, "mg/dL", old, seq=3), ctx, RECEIVED)
    assert late is not None and late.time == old.replace(tzinfo=UTC) and "late" in late.flags and events == []
    # Only a live stream is judged by skew: a heart-rate strap that far off has a wrong clock.
    hr = DeviceContext("h", "ble-heart-rate", "ICU-9")
    live, events = norm.normalize(Reading("h", "HR", 72.0, "/min", old), hr, RECEIVED)
    assert live is not None and live.time == RECEIVED and "clock_skew" in live.flags and events


def test_ble_units_reach_the_rules_in_canonical_units():
    norm = Normalizer(max_clock_skew_s=None)
    ctx = DeviceContext("s", "ble-weight", "ICU-9")
    obs, _ = norm.normalize(Reading("s", "WEIGHT", 180.0, "[lb_av]"), ctx, RECEIVED)
    assert obs is not None and (obs.value, obs.unit) == (81.65, "kg")
    obs, _ = norm.normalize(Reading("s", "TEMP", 97.8, "[degF]"), DeviceContext("t", "ble-temperature", "b"), RECEIVED)
    assert obs is not None and (obs.value, obs.unit) == (36.56, "Cel")
    for flag in ("demo_data", "test_data", "sensor_disconnected"):
        obs, _ = norm.normalize(Reading("x", "SPO2", 97.0, "%", flags=frozenset({flag})), ctx, RECEIVED)
        assert obs is not None and obs.quality == "invalid", flag


def test_decode_ble_heart_rate_file(tmp_path):
    capture = tmp_path / "hr.txt"
    capture.write_text("16 48 54 01 EC 02\n02 3C\n0x2a19: 64\nzz\n")
    res = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "decode", "--protocol", "ble-heart-rate", str(capture)],
        capture_output=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert b"frames ok 3, bad 1" in res.stderr
    assert res.stdout.count(b'"MDC_ECG_HEART_RATE"') == 2
    assert res.stdout.count(b'"MDC_ECG_TIME_PD_RR_GL"') == 2


async def test_gateway_reads_ble_sensors_through_bleak(tmp_path):
    radio = SimRadio()
    strap = radio.add(HeartRateSim("C0:FF:EE:00:00:01", period_s=0.05))
    meter = radio.add(GlucoseSim("C0:FF:EE:00:00:02", period_s=0.1))
    text = BENCH.format(reg=tmp_path / "r.json")
    text += ble_device("hr-1", "ble-heart-rate", "ble:C0:FF:EE:00:00:01", "reopen_min_s = 0.05\nreopen_max_s = 0.2\n")
    text += ble_device("glu-1", "ble-glucose", "ble:any", "reopen_min_s = 0.05\nreopen_max_s = 0.2\n")
    gateway = Gateway(parse_config(text, "g.toml"), outputs=[MemoryOutput("m")], radio=radio.backend())
    seen: list[Record] = []
    gateway.subscribers.append(seen.append)
    stop = asyncio.Event()
    sims = [asyncio.create_task(strap.run()), asyncio.create_task(meter.run())]
    run = asyncio.create_task(gateway.run(stop))

    def metrics():
        return {o.metric for o in seen if isinstance(o, Observation)}

    try:
        await until(lambda: {"MDC_ECG_HEART_RATE", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"} <= metrics())
        meter.leave()
        await asyncio.sleep(0.5)
        meter.come_back()
        await until(lambda: Registry(tmp_path / "r.json").last_record("glu-1") == len(meter.records), timeout_s=10)
    finally:
        stop.set()
        assert await run
        for sim in sims:
            sim.cancel()
    glucose = [o for o in seen if isinstance(o, Observation) and o.metric.startswith("MDC_CONC_GLU")]
    assert len({o.obs_id for o in glucose}) == len(glucose) >= len(meter.records) - 1
    assert all(o.bed_id == "ICU-9" for o in glucose)
    assert ("hr-1", "connected") in {(e.device_id, e.kind) for e in seen if isinstance(e, TechnicalEvent)}


def test_every_term_family_has_a_place_in_the_hl7_code_precedence():
    # The precedence is the registry's order: every family with a label table is in it.
    from drivers.registry import FAMILIES, term_tables

    assert sorted(term_tables()) == sorted(f.name for f in FAMILIES if f.table())
    assert {"masimo", "nonin", "ble", "medibus", "datex", "intellivue"} <= set(term_tables())
