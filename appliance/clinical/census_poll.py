"""The census from the hospital's FHIR server: Encounters polled over mutual TLS 1.3.

The alternative to the ADT feed (use one or the other: the poll discharges every
census patient the server no longer lists). Every `census_fhir_poll_s` the gateway
GETs `census_fhir_url`, a FHIR R4 searchset Bundle such as
`Encounter?status=in-progress&_include=Encounter:subject&_include=Encounter:location`:

- each in-progress Encounter names its patient (`subject`: the included Patient's
  identifiers, the first being the primary one; else the reference's id) and its
  bed (`location[0].location`: the included Location's `name`, else the
  reference's `display`) - the bed's name is what the gateway's bed ids match;
- `reconcile` turns the difference between that list and the census into census
  events (a new patient: admit; another bed: transfer; a patient no longer listed:
  discharge; new identifiers: update), which go through the same
  `ClinicalPlane.on_adt` as ADT messages: the same refusals, re-quarantine,
  technical events and audit.

A poll that fails (TLS, HTTP status, not JSON, not a Bundle, over `MAX_BYTES`)
changes nothing and raises `census_unavailable` once, ended by the next good poll.
The HTTP GET runs in a thread; `reconcile` is pure.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from appliance.clinical.census import MAX_IDENTIFIERS, MAX_STAYS, Census
from appliance.clinical.plane import ADT_DEVICE, ClinicalPlane
from appliance.core.errors import BedsideInputError
from appliance.core.model import Record, TechnicalEvent
from appliance.core.vocab import TechnicalKind

__all__ = ["MAX_BYTES", "CensusPoller", "FhirCensusError", "PolledEvent", "reconcile"]

log = logging.getLogger(__name__)

MAX_BYTES: Final = 8 * 1024 * 1024  # a hospital-wide census Bundle; more is refused, not read
TIMEOUT_S: Final = 10.0


class FhirCensusError(BedsideInputError):
    """A census poll that cannot be used (one line why)."""


@dataclass(frozen=True, slots=True)
class PolledEvent:
    """A census event derived from the server's Encounters (a `CensusEvent`)."""

    trigger: str
    patient_ids: tuple[str, ...]
    location: tuple[str, str, str] = ("", "", "")
    visit: str = ""
    consent: str = ""
    control_id: str = ""


def _str(value: Any) -> str:
    return value[:64] if isinstance(value, str) else ""


def _included(entries: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if (
            isinstance(res, dict)
            and res.get("resourceType") in ("Patient", "Location")
            and isinstance(res.get("id"), str)
        ):
            out[f"{res['resourceType']}/{res['id']}"] = res
    return out


def _patient_ids(ref: Any, included: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    ref = ref if isinstance(ref, dict) else {}
    patient = included.get(_str(ref.get("reference")), {})
    idents = patient.get("identifier")
    ids = [_str(i.get("value")) for i in (idents if isinstance(idents, list) else []) if isinstance(i, dict)]
    ids = [i for i in ids if i] or [_str(ref.get("reference")).removeprefix("Patient/")]
    return tuple(dict.fromkeys(i for i in ids if i))[:MAX_IDENTIFIERS]


def _bed(encounter: dict[str, Any], included: dict[str, dict[str, Any]]) -> str:
    locations = encounter.get("location")
    for loc in locations if isinstance(locations, list) else []:
        ref = loc.get("location") if isinstance(loc, dict) else None
        if not isinstance(ref, dict) or (isinstance(loc, dict) and loc.get("status") not in (None, "active")):
            continue
        named = included.get(_str(ref.get("reference")), {})
        return _str(named.get("name")) or _str(ref.get("display"))
    return ""


def encounters(bundle: Any) -> dict[str, tuple[tuple[str, ...], str, str]]:
    """primary patient id -> (identifiers, bed name, encounter id) of each in-progress Encounter with a bed."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirCensusError("not a FHIR Bundle")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list) or len(entries) > 3 * MAX_STAYS:
        raise FhirCensusError(f"Bundle.entry is not a list of at most {3 * MAX_STAYS}")
    included = _included(entries)
    out: dict[str, tuple[tuple[str, ...], str, str]] = {}
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict) or res.get("resourceType") != "Encounter" or res.get("status") != "in-progress":
            continue
        ids, bed = _patient_ids(res.get("subject"), included), _bed(res, included)
        if ids and bed:
            out[ids[0]] = (ids, bed, _str(res.get("id")))
    return out


def reconcile(census: Census, bundle: Any) -> list[PolledEvent]:
    """The census events that make `census` what the server lists (pure)."""
    listed = encounters(bundle)
    events: list[PolledEvent] = []
    for ids, bed, enc in sorted(listed.values()):
        location = ("", "", bed)
        stay = next((s for i in ids if (s := census.stay_of(i)) is not None), None)
        if stay is None:
            events.append(PolledEvent("A01", ids, location, enc, control_id=f"Encounter/{enc}"))
        elif stay.location != "^".join(location):
            events.append(PolledEvent("A02", ids, location, enc, control_id=f"Encounter/{enc}"))
        elif not set(ids) <= set(stay.identifiers):
            events.append(PolledEvent("A08", ids, location, enc, control_id=f"Encounter/{enc}"))
    known = {i for ids, _, _ in listed.values() for i in ids}
    for stay in census.stays():
        if not known & set(stay.identifiers):
            events.append(PolledEvent("A03", (stay.patient_id,), control_id="no longer listed"))
    return events


def fetch(url: str, ctx: ssl.SSLContext) -> Any:
    """GET `url` over mutual TLS; the JSON body (blocking: call it in a thread)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FhirCensusError(f"{url}: not an https:// URL")
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, context=ctx, timeout=TIMEOUT_S)
    try:
        conn.request(
            "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers={"Accept": "application/fhir+json"}
        )
        resp = conn.getresponse()
        if resp.status != 200:
            raise FhirCensusError(f"{url}: HTTP {resp.status}")
        body = resp.read(MAX_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise FhirCensusError(f"{url}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    if len(body) > MAX_BYTES:
        raise FhirCensusError(f"{url}: response over {MAX_BYTES} bytes (bound)")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FhirCensusError(f"{url}: not JSON ({exc})") from None


@dataclass(slots=True)
class CensusPoller:
    plane: ClinicalPlane
    url: str
    context: ssl.SSLContext
    publish: Callable[[Record], None]
    poll_s: float = 30.0
    _down: str = ""

    def poll_once(self, bundle: Any) -> int:
        """In the loop: apply one poll's Bundle; returns the events taken."""
        assert self.plane.census is not None
        taken = 0
        for event in reconcile(self.plane.census, bundle):
            taken += not self.plane.on_adt(event)
        return taken

    def _said(self, why: str) -> None:
        if why == self._down:
            return
        active, self._down = bool(why), why
        detail = why or "census server answers again"
        self.publish(TechnicalEvent(ADT_DEVICE, TechnicalKind.CENSUS_UNAVAILABLE, active=active, detail=detail))

    async def run(self) -> None:
        while True:
            try:
                bundle = await asyncio.to_thread(fetch, self.url, self.context)
                self.poll_once(bundle)
                self._said("")
            except FhirCensusError as exc:
                log.warning("census poll: %s", exc)
                self._said(str(exc))
            await asyncio.sleep(self.poll_s)


def poller(config: Any, plane: ClinicalPlane, publish: Callable[[Record], None]) -> CensusPoller:
    """The poller of a config's `[clinical] census_fhir_url`, with the uplink's TLS files
    (AdtFeedError-like one line, exit 2, when they do not load)."""
    from appliance.uplink.tls import TlsFiles, UplinkTlsError, client_context

    up = config.uplink
    try:
        ctx = client_context(TlsFiles(up.ca_path, up.cert_path, up.key_path))
    except UplinkTlsError as exc:
        raise FhirCensusError(f"clinical.census_fhir_url: {exc}") from None
    c = config.clinical
    return CensusPoller(plane, c.census_fhir_url, ctx, publish, c.census_fhir_poll_s)
