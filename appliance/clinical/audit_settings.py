"""The `[audit]` and `[fhir]` sections: the audit trail, its journal, the FHIR charting.

Their own module so that reading a config loads nothing of the clinical plane
(cryptography, the journal) when they are off.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.core.settings import setting

__all__ = ["AuditSettings", "FhirSettings"]


@dataclass(frozen=True, slots=True)
class AuditSettings:
    # The journal: the audit chain and the FHIR resources waiting for the broker, sealed
    # with the store's key; "" = no audit trail and no FHIR output.
    journal_path: str = setting("")
    # EC P-256 key that signs audit entries; "" = the uplink's client key (the box key).
    key_path: str = setting("")
    # The arbiter's decisions are audited as one entry per bed and metric per period.
    arbiter_digest_s: float = setting(60.0, min=1.0, max=3600.0)
    # Delivered audit entries kept on the box beyond this many are purged, oldest first.
    max_entries: int = setting(1_000_000, min=1000, max=100_000_000)


@dataclass(frozen=True, slots=True)
class FhirSettings:
    # One charted value per patient, device and metric per this interval (by observation time).
    charting_interval_s: float = setting(60.0, min=1.0, max=86_400.0)
    # The identifier system patients are referenced by (the hospital's MRN system).
    patient_identifier_system: str = setting("urn:bedside:patient-id", min_len=1)
    # Undelivered FHIR resources kept; beyond it the oldest are dropped and counted.
    max_pending: int = setting(100_000, min=100, max=10_000_000)
