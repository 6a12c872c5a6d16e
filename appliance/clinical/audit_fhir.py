"""The clinical plane, wired into the gateway: audit trail, charting, FHIR, journal, topics.

The gateway makes one when `[audit] journal_path` is set. It is a synchronous
subscriber (after the alarm circuit): a charted observation or an alarm of a
paired, consented patient becomes a FHIR resource offered to the journal's
buffer, an OTA step an audit entry; nothing here awaits disk or network. Its task
commits the journal, flushes the arbiter digest every `arbiter_digest_s` and
publishes the journal's streams over the uplink's connection. Telemetry is left
exactly as it was: this is a second plane beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from appliance.arbiter import AuditRecord
from appliance.clinical.audit import ArbiterDigest, AuditTrail, load_box_key
from appliance.clinical.audit_settings import AuditSettings, FhirSettings
from appliance.clinical.chain import AuditFormatError
from appliance.clinical.charting import (
    BloodPressurePairs,
    ChartGate,
    ConsentPredicate,
    every_paired_patient_consented,
    limits_for,
)
from appliance.clinical.fhir import (
    Limits,
    PatientRef,
    alarm_resource,
    blood_pressure_panel,
    device_metric_resource,
    device_resource,
    observation_resource,
)
from appliance.clinical.journal import Journal, JournalError
from appliance.clinical.publisher import AuditPublisher, Send
from appliance.core.errors import BedsideStoreError
from appliance.core.model import AlarmEvent, Observation, Record, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from appliance.queue.seal import Sealer, load_or_create_key
from rules.spec import RuleSet

__all__ = ["AuditFhirPlane", "for_gateway"]

if TYPE_CHECKING:
    from appliance.gateway import Gateway

log = logging.getLogger(__name__)
_OTA_KINDS: Final = frozenset({TechnicalKind.UPDATE, TechnicalKind.UPDATE_REFUSED, TechnicalKind.UPDATE_DEFERRED})
MAX_PAIRINGS_LISTED: Final = 256  # in the start entry; the count says if there were more
MAX_DEVICE_METRICS: Final = 4096  # (device, metric) pairs whose DeviceMetric was sent; then sent again


def _pairing_fields(p: Any) -> dict[str, object]:
    return {"device_id": p.device_id, "bed_id": p.bed_id, "patient_id": p.patient_id}


class AuditFhirPlane:
    def __init__(
        self,
        settings: AuditSettings,
        fhir: FhirSettings,
        *,
        audit_key_path: str,
        seal_key_path: str,
        gateway_id: str,
        ruleset: RuleSet,
        now_ms: Callable[[], int],
        protocols: Mapping[str, str],
        send: Send | None = None,
        consented: ConsentPredicate = every_paired_patient_consented,
    ) -> None:
        self.settings = settings
        key = load_box_key(audit_key_path)  # first: a bad key is exit 2 before any file is made
        sealer = Sealer(load_or_create_key(seal_key_path, create=True))
        self.journal, head, self._why = self._open_journal(settings, fhir, sealer)
        self.trail = AuditTrail(key, gateway_id, now_ms, self.journal.offer_audit, head)
        self.gate = ChartGate(fhir.charting_interval_s, consented)
        self.digest = ArbiterDigest()
        self.bp = BloodPressurePairs()
        self.patients = PatientRef(fhir.patient_identifier_system)
        self._ruleset = ruleset
        self._limits: dict[str, Limits] = {}
        self._protocols = dict(protocols)
        self._devices_said: dict[str, tuple[str, str | None]] = {}
        self._metrics_said: set[tuple[str, int]] = set()
        self.refused: dict[str, int] = {}  # observations not charted, by reason (`bedside stats`)
        self.publisher = AuditPublisher(self.journal, send, gateway_id) if send is not None else None

    @staticmethod
    def _open_journal(
        settings: AuditSettings, fhir: FhirSettings, sealer: Sealer
    ) -> tuple[Journal, tuple[int, str] | None, str]:
        """The journal and its chain head. One that does not open or whose newest entry
        does not read (damaged, another key) is set aside, never fatal: the alarms must
        run, and the new chain's first entry says why it starts again."""

        def journal() -> Journal:
            return Journal(settings.journal_path, sealer, audit_max_entries=settings.max_entries,
                           clinical_max_rows=fhir.max_pending)  # fmt: skip

        try:
            opened = journal()
        except JournalError as exc:
            problem = str(exc)
        else:
            try:
                head = opened.head()
            except (AuditFormatError, BedsideStoreError) as exc:
                problem = str(exc)
                opened.close()
            else:
                return opened, head, "new journal" if head is None else "gateway started"
        aside = Path(f"{settings.journal_path}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(settings.journal_path + suffix).rename(f"{aside}{suffix}")
        log.error("journal %s unreadable (%s); set aside as %s, a new chain starts", settings.journal_path, problem,
                  aside)  # fmt: skip
        return journal(), None, f"journal unreadable ({problem}); set aside as {aside}"

    # -- audit sources -------------------------------------------------------------------
    def start(self, config_sha256: str, devices: int, pairings: Mapping[str, Any]) -> None:
        """The run's first entries: the chain (re)started, the configuration's hash, and
        the pairings as the gateway found them (changes made while it was down)."""
        self.trail.start(self._why)
        self.trail.record("config_loaded", {"sha256": config_sha256, "devices": devices})
        listed = [_pairing_fields(p) for _, p in sorted(pairings.items())[:MAX_PAIRINGS_LISTED]]
        self.trail.record("pairings_loaded", {"count": len(pairings), "pairings": listed})

    def on_arbiter(self, record: AuditRecord) -> None:
        self.digest.add(record)

    def pairings_changed(self, old: Mapping[str, Any], new: Mapping[str, Any], writer: Mapping[str, object]) -> None:
        """Registry changes the gateway picked up: one entry per device, naming the file's owner."""
        for device in sorted(old.keys() | new.keys()):
            before, after = old.get(device), new.get(device)
            if before == after:
                continue
            if after is None:
                self.trail.record("unpairing", {**_pairing_fields(before), "file_owner": dict(writer)})
            else:
                was = _pairing_fields(before) if before is not None else None
                self.trail.record("pairing", {**_pairing_fields(after), "was": was, "file_owner": dict(writer)})

    # -- the subscriber ------------------------------------------------------------------
    def on_record(self, record: Record) -> None:
        if isinstance(record, Observation):
            self._observation(record)
        elif isinstance(record, AlarmEvent):
            if record.patient_id is not None and self.gate.consented(record.patient_id):
                self._offer(alarm_resource(record, self.patients))
        elif isinstance(record, TechnicalEvent) and record.device_id == "ota" and record.kind in _OTA_KINDS:
            self.trail.record("ota_step", {"kind": record.kind, "active": record.active, "detail": record.detail})

    def _observation(self, obs: Observation) -> None:
        reason = self.gate.refusal(obs)
        if reason:
            self.refused[reason] = self.refused.get(reason, 0) + 1
            return
        said = (obs.bed_id, obs.patient_id)
        if self._devices_said.get(obs.device_id) != said:
            self._devices_said[obs.device_id] = said
            protocol = self._protocols.get(obs.device_id, "unknown")
            self._offer(device_resource(obs.device_id, protocol, obs.bed_id, obs.patient_id, self.patients))
        if (obs.device_id, obs.code) not in self._metrics_said:
            if len(self._metrics_said) >= MAX_DEVICE_METRICS:
                self._metrics_said.clear()
            self._metrics_said.add((obs.device_id, obs.code))
            self._offer(device_metric_resource(obs.device_id, obs.metric, obs.code, obs.unit))
        limits = self._limits.get(obs.bed_id)
        if limits is None:
            limits = self._limits[obs.bed_id] = limits_for(self._ruleset, obs.bed_id)
        self._offer(observation_resource(obs, self.patients, limits))
        if (pair := self.bp.add(obs)) is not None:
            self._offer(blood_pressure_panel(*pair, self.patients))

    def _offer(self, resource: dict[str, Any]) -> None:
        self.journal.offer_clinical(json.dumps(resource, separators=(",", ":"), allow_nan=False).encode())

    def stats(self) -> dict[str, object]:
        """For `bedside stats` and status/health: memory only."""
        j = self.journal
        return {
            "audit_seq": self.trail.seq, "audit_recorded": self.trail.recorded, "not_charted": dict(self.refused),
            "journal_written": dict(j.written), "journal_dropped": dict(j.dropped),
            "published": dict(self.publisher.published) if self.publisher is not None else None,
        }  # fmt: skip

    # -- the task ------------------------------------------------------------------------
    async def _digest(self) -> None:
        period = self.settings.arbiter_digest_s
        while True:
            await asyncio.sleep(period)
            self.digest.flush(self.trail.record, period)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.journal.run(), name="journal"),
                 asyncio.create_task(self._digest(), name="arbiter-digest")]  # fmt: skip
        if self.publisher is not None:
            tasks.append(asyncio.create_task(self.publisher.run(), name="clinical-publisher"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a crash goes to the supervisor (driver_crashed, restart)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def flush(self, timeout_s: float) -> None:
        """At shutdown: the digest of the last period, everything buffered (within
        `timeout_s`; what does not make it is named in the log), then close."""
        self.digest.flush(self.trail.record, self.settings.arbiter_digest_s)
        try:
            async with asyncio.timeout(timeout_s):
                await self.journal.commit()
        except TimeoutError:
            log.error("journal %s: not written within %.1f s at shutdown", self.journal.path, timeout_s)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.journal.close()


def for_gateway(gw: Gateway, gateway_id: str) -> AuditFhirPlane:
    """The plane of a gateway with `[audit] journal_path`, subscribed after the alarm circuit."""
    cfg = gw.config
    plane = AuditFhirPlane(
        cfg.audit, cfg.fhir, audit_key_path=cfg.audit.key_path or cfg.uplink.key_path,
        seal_key_path=cfg.queue.key_path, gateway_id=gateway_id, ruleset=gw.alarms.engine.ruleset,
        now_ms=lambda: round(gw.clock.now().timestamp() * 1000), protocols={d.id: d.protocol for d in cfg.devices},
        send=gw.uplink.publish_side if gw.uplink is not None else None,
    )  # fmt: skip
    gw.subscribers.append(plane.on_record)
    return plane
