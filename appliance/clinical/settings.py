"""The config's [clinical] section: bed census (ADT feed), consent.

Empty `census_path` = no census: pairings are taken as typed (the gateway before
issue 21). With a census, a pairing must name the census patient of its bed
(`bedside devices pair`), and a device's values carry its patient only while the
census has that patient in that bed.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.core.settings import setting

__all__ = ["ClinicalSettings"]


@dataclass(frozen=True, slots=True)
class ClinicalSettings:
    # The census as the ADT feed left it (JSON, written by the gateway, read by the CLI).
    census_path: str = setting("", written=True)
    # ADT over MLLP: tcp://HOST:PORT or tls://HOST:PORT (TLS 1.3, client certificates); "" = no feed.
    adt_listen: str = setting("")
    adt_tls_cert_path: str = setting("")
    adt_tls_key_path: str = setting("")
    adt_tls_ca_path: str = setting("")  # empty: the uplink's CA
    # The FHIR alternative to the ADT feed: an Encounter search Bundle polled over mutual
    # TLS 1.3 with the uplink's CA, certificate and key (appliance/clinical/census_poll.py).
    census_fhir_url: str = setting("")  # https://ehr/fhir/Encounter?status=in-progress&_include=...; "" = off
    census_fhir_poll_s: float = setting(30.0, min=1.0, max=86_400.0)
    # Per-patient consent (JSON; the ADT feed's CON-11 and `bedside consent set`).
    consent_path: str = setting("", written=True)
    default_consent: str = setting("granted", choices=("granted", "withheld"))
    # How often operator consent changes reach the running gateway.
    consent_poll_s: float = setting(2.0, min=0.1, max=3600.0)
