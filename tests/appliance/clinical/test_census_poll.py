"""The FHIR census poll: Encounters reconciled into census events; a real nginx with
client certificates serving the Bundle to a running gateway."""

from __future__ import annotations

import asyncio
import json

import pytest

from appliance.clinical.census import Census
from appliance.clinical.census_poll import FhirCensusError, encounters, reconcile
from appliance.config import ConfigError, parse_config
from appliance.core.model import Record, TechnicalEvent
from appliance.gateway import Gateway
from appliance.registry import Registry
from appliance.sdnotify import Notifier
from hil.broker import Pki
from hil.fleet_server import FleetServer
from rules.outputs import MemoryOutput
from tests.appliance.clinical.fhir_bundles import bundle


def applied(census: Census, b: object) -> list[tuple[str, str]]:
    events = reconcile(census, b)
    for ev in events:
        assert census.apply(ev).ok
    return [(ev.trigger, ev.patient_ids[0]) for ev in events]


def test_encounters_admit_move_update_and_discharge():
    c = Census()
    assert applied(c, bundle(("e1", ["MRN-1"], "ICU-3"), ("e2", ["MRN-2"], "ICU-4"))) == [
        ("A01", "MRN-1"), ("A01", "MRN-2")]  # fmt: skip
    assert c.patient_at("ICU-3", "MRN-1") == "MRN-1"
    assert applied(c, bundle(("e1", ["MRN-1"], "ICU-3"), ("e2", ["MRN-2"], "ICU-4"))) == []  # no change, no event
    assert applied(c, bundle(("e1", ["MRN-1", "WB-1"], "ICU-5"), ("e2", ["MRN-2", "WB-2"], "ICU-4"))) == [
        ("A02", "MRN-1"), ("A08", "MRN-2")]  # fmt: skip
    assert c.patient_at("ICU-5", "WB-1") == "MRN-1" and c.patient_at("ICU-4", "WB-2") == "MRN-2"
    assert applied(c, bundle(("e2", ["MRN-2"], "ICU-4"))) == [("A03", "MRN-1")]


def test_finished_encounters_and_ones_without_a_bed_are_not_in_the_census():
    b = bundle(("e1", ["MRN-1"], "ICU-3"), status="finished")
    assert encounters(b) == {}
    nobed = bundle(("e2", ["MRN-2"], ""))
    assert encounters(nobed) == {}


@pytest.mark.parametrize("bad", [[], {"resourceType": "Patient"}, {"resourceType": "Bundle", "entry": {}}])
def test_what_is_not_a_bundle_is_refused(bad):
    with pytest.raises(FhirCensusError):
        reconcile(Census(), bad)


def test_one_census_source_and_https_only(tmp_path):
    base = f'[gateway]\nbed_id = "ICU-3"\n[clinical]\ncensus_path = "{tmp_path / "c.json"}"\n'
    with pytest.raises(ConfigError, match="must be an https:// URL"):
        parse_config(base + 'census_fhir_url = "http://ehr/fhir/Encounter"\n')
    with pytest.raises(ConfigError, match="one census source"):
        parse_config(base + 'census_fhir_url = "https://ehr/x"\nadt_listen = "tcp://127.0.0.1:0"\n')


@pytest.fixture
def ehr(tmp_path, pki: Pki):
    root = tmp_path / "www"
    (root / "fhir").mkdir(parents=True)
    server = FleetServer(tmp_path / "nginx", root, ca=pki.ca, cert=str(pki.dir / "broker.pem"),
                         key=str(pki.dir / "broker.key"))  # fmt: skip
    server.start()
    yield server, root / "fhir" / "Encounter"
    server.stop()


def gateway_with_poll(tmp_path, pki: Pki, url: str, client: str) -> Gateway:
    ca, cert, key = pki.client_paths(client)
    config = parse_config(
        f'[gateway]\nbed_id = "ICU-3"\nregistry_path = "{tmp_path / "reg.json"}"\n'
        f'[uplink]\nca_path = "{ca}"\ncert_path = "{cert}"\nkey_path = "{key}"\n'
        f'[clinical]\ncensus_path = "{tmp_path / "census.json"}"\ncensus_fhir_url = "{url}"\ncensus_fhir_poll_s = 1.0\n'
    )
    return Gateway(config, notifier=Notifier({}), outputs=[MemoryOutput()])


async def test_a_running_gateway_follows_the_census_server(tmp_path, pki, ehr):
    server, encounters_file = ehr
    encounters_file.write_text(json.dumps(bundle(("e1", ["MRN-1", "WB-1"], "ICU-3"))))
    url = f"https://localhost:{server.port}/fhir/Encounter?status=in-progress&_include=Encounter:subject"
    Registry(tmp_path / "reg.json").pair("mon", "ICU-3", "MRN-1")
    gw = gateway_with_poll(tmp_path, pki, url, "gw-1")
    seen: list[Record] = []
    gw.subscribers.append(seen.append)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))

    def kinds() -> list[str]:
        return [r.kind for r in seen if isinstance(r, TechnicalEvent) and r.device_id in ("adt", "mon")]

    try:
        async with asyncio.timeout(10):
            while gw.clinical.patient_for("ICU-3", "MRN-1") != "MRN-1":
                await asyncio.sleep(0.05)
            encounters_file.write_text(json.dumps(bundle(("e1", ["MRN-1"], "ICU-4"))))  # moved
            while "unpaired_by_census" not in kinds():
                await asyncio.sleep(0.05)
            encounters_file.write_text("{not json")
            while "census_unavailable" not in kinds():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await runner
    assert gw.clinical.patient_for("ICU-4", "MRN-1") == "MRN-1"  # a bad poll changed nothing
    assert gw.clinical.patient_for("ICU-3", "MRN-1") is None


async def test_a_client_certificate_from_another_ca_gets_nothing(tmp_path, pki, ehr):
    server, encounters_file = ehr
    encounters_file.write_text(json.dumps(bundle(("e1", ["MRN-1"], "ICU-3"))))
    # The gateway presents a certificate from another CA (hil/broker.py's "rogue"): nginx refuses it.
    gw = gateway_with_poll(tmp_path, pki, f"https://localhost:{server.port}/fhir/Encounter", "rogue")
    seen: list[Record] = []
    gw.subscribers.append(seen.append)
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(10):
            while not any(isinstance(r, TechnicalEvent) and r.kind == "census_unavailable" for r in seen):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await runner
    (down,) = [r for r in seen if isinstance(r, TechnicalEvent) and r.kind == "census_unavailable"]
    assert down.active and "HTTP 400" in down.detail  # nginx: "No required SSL certificate was sent"/bad cert
    assert gw.clinical.census is not None and len(gw.clinical.census) == 0
