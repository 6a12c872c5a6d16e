"""The gateway's clinical plane: census from the ADT feed, consent, release of quarantine.

In the loop, synchronously and without I/O (the alarm path may call it):
- `patient_for(bed, paired)`: a device's readings carry its paired patient only
  while the census has that patient in that bed; otherwise they are quarantined
  (patient None). Without a census (`[clinical] census_path` empty) the pairing
  is taken as it is.
- `gate(obs)`: an observation of a patient whose consent is withheld gets the
  `consent_withheld` flag; the queue keeps it in the store's `withheld` class,
  never sent. The alarm circuit sees it like any other: local alarms always run.
- `on_adt(event)`: the ADT listener's callback. The census decides; a refusal is
  a `census_refused` technical event and an AE to the sender. A bed whose patient
  left (transfer, discharge, cancel, displacement) has its devices' pairings
  ended: a `unpaired_by_census` technical event per device, their readings
  quarantined from the next one on.

Off the loop (the `clinical` task, in a thread): the census and consent files,
the registry writes that end pairings, and re-reading the consent file after
`bedside consent set`.

Audit: every decision item 4 of issue 21 audits goes to the injected `audit`
hook (kind, fields), the gateway's audit trail (`Gateway.audit`): `pairing_ended`,
`consent_changed`, `census_refused`, `quarantine_released`
(appliance/clinical/release.py). Pairings made or removed in the registry are
recorded by the audit trail itself (appliance/clinical/audit_fhir.py). The
default hook does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from appliance.clinical.census import Census, CensusEvent, Outcome
from appliance.clinical.consent import WITHHELD_FLAG, Consent, ConsentBook
from appliance.clinical.files import ClinicalFileError, load_json, save_json, update_json
from appliance.clinical.settings import ClinicalSettings
from appliance.core.clock import Clock
from appliance.core.model import Observation, Record, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from appliance.identity import bed_names
from appliance.registry import Pairing, Registry

__all__ = ["ADT_DEVICE", "AuditHook", "ClinicalPlane", "no_audit"]

log = logging.getLogger(__name__)

AuditHook = Callable[[str, Mapping[str, object]], None]
ADT_DEVICE: Final = "adt"  # the device id of the census feed's technical events
CENSUS: Final = "census"  # who ended a pairing the census ended (Pairing.by)


class _RePaired(Exception):
    """The pairing the census ended was changed by someone else before it was written."""


def _still_paired(ended: Pairing, current: list[Pairing]) -> None:
    """Registry check (under its lock): the pairing to end is still the one in the file."""
    now = next((p for p in current if p.device_id == ended.device_id), None)
    if now is None or (now.bed_id, now.patient_id) != (ended.bed_id, ended.patient_id):
        raise _RePaired(ended.device_id)


def no_audit(kind: str, fields: Mapping[str, object]) -> None:
    """The default audit hook: nothing (the audit trail plugs in here)."""


@dataclass(slots=True)
class ClinicalPlane:
    settings: ClinicalSettings
    registry: Registry
    publish: Callable[[Record], None]
    clock: Clock
    audit: AuditHook = no_audit
    on_change: Callable[[], None] = lambda: None  # the gateway forgets its device contexts
    census: Census | None = None
    consent: ConsentBook = field(default_factory=ConsentBook)
    _unpair: list[Pairing] = field(default_factory=list)  # pairings to end in the registry file
    _consent_changes: dict[str, tuple[Consent, str, int]] = field(default_factory=dict)
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _consent_mtime: int | None = None

    @classmethod
    def load(
        cls, settings: ClinicalSettings, registry: Registry, publish: Callable[[Record], None], clock: Clock
    ) -> ClinicalPlane:
        """Read the census and consent files (start-up; blocking)."""
        census = None
        if settings.census_path:
            data = load_json(settings.census_path)
            census = Census() if data is None else Census.from_json(data, settings.census_path)
        plane = cls(settings, registry, publish, clock, census=census)
        plane.consent = plane._read_consent()
        return plane

    # -- in the loop ---------------------------------------------------------------------
    def patient_for(self, bed_id: str, paired: str | None) -> str | None:
        return paired if self.census is None else self.census.patient_at(bed_id, paired)

    def aliases(self, bed_id: str) -> tuple[str, ...]:
        """Every identifier of the census patient in the bed (a device may name any of them)."""
        stay = self.census.at_bed(bed_id) if self.census is not None else None
        return stay.identifiers if stay is not None else ()

    def consented(self, patient_id: str) -> bool:
        """The chart gate's consent predicate (appliance/clinical/charting.py)."""
        return self.consent.state(patient_id) is Consent.GRANTED

    def gate(self, obs: Observation) -> Observation:
        if obs.patient_id is None or obs.quarantine or self.consent.state(obs.patient_id) is Consent.GRANTED:
            return obs
        return replace(obs, flags=obs.flags | {WITHHELD_FLAG})

    def _now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    def on_adt(self, event: CensusEvent) -> str:
        """The census feed's callback: why the event is refused, "" when taken."""
        if self.census is None:
            return "no census on this gateway ([clinical] census_path)"
        outcome = self.census.apply(event, self._now_ms())
        if not outcome.ok:
            detail = f"ADT^{event.trigger} {event.control_id}: {outcome.reason}"
            self.publish(TechnicalEvent(ADT_DEVICE, TechnicalKind.CENSUS_REFUSED, detail=detail))
            self.audit(
                "census_refused", {"trigger": event.trigger, "control_id": event.control_id, "reason": outcome.reason}
            )
            return outcome.reason
        self._bed_changes(outcome)
        if event.consent:
            self.set_consent(outcome.patient_id, Consent(event.consent), "adt")
        log.info("census: ADT^%s %s for patient %s taken", event.trigger, event.control_id, outcome.patient_id)
        self._dirty.set()
        return ""

    def _bed_changes(self, outcome: Outcome) -> None:
        for change in outcome.changes:
            if change.before is None:
                continue
            names = bed_names(change.location)
            for pairing in self.registry.pairings():
                if pairing.patient_id != change.before or pairing.bed_id.casefold() not in names:
                    continue
                self._unpair.append(pairing)
                what = f"patient {change.before} left bed {pairing.bed_id} ({change.why})"
                detail = f"{what}: values quarantined until re-paired"
                event = TechnicalEvent(
                    pairing.device_id, TechnicalKind.UNPAIRED_BY_CENSUS, detail=detail, bed_id=pairing.bed_id
                )
                self.publish(replace(event, time=self.clock.now()))
                self.audit("pairing_ended", {"device_id": pairing.device_id, "bed_id": pairing.bed_id,
                                             "patient_id": change.before, "reason": change.why})  # fmt: skip
        if outcome.changes:
            self.on_change()

    def set_consent(self, patient_id: str, state: Consent, source: str) -> None:
        now = self._now_ms()
        if self.consent.set(patient_id, state, source, now):
            self.audit("consent_changed", {"patient_id": patient_id, "state": state.value, "source": source})
            self.publish(TechnicalEvent(ADT_DEVICE, TechnicalKind.CONSENT_CHANGED,
                                        detail=f"consent of {patient_id} {state.value} ({source})"))  # fmt: skip
        self._consent_changes[patient_id] = (state, source, now)
        self._dirty.set()

    # -- off the loop ------------------------------------------------------------------
    def _read_consent(self) -> ConsentBook:
        default = Consent(self.settings.default_consent)
        path = self.settings.consent_path
        if not path:
            return ConsentBook(default)
        try:
            self._consent_mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            self._consent_mtime = None
        return ConsentBook.from_json(load_json(path), default, path)

    def _save(self) -> None:
        """Blocking: census file, consent changes, pairings to end."""
        s = self.settings
        if self.census is not None and s.census_path:
            save_json(s.census_path, self.census.to_json())
        changes, self._consent_changes = self._consent_changes, {}
        if changes and s.consent_path:

            def merge(data: object) -> object:
                book = ConsentBook.from_json(data, Consent(s.default_consent), s.consent_path)
                for patient, (state, source, when) in changes.items():
                    book.set(patient, state, source, when)
                return book.to_json()

            update_json(s.consent_path, merge)
        unpair, self._unpair = self._unpair, []
        for p in unpair:
            with contextlib.suppress(_RePaired):  # an operator paired it again meanwhile: theirs stands
                self.registry.pair(p.device_id, p.bed_id, None, functools.partial(_still_paired, p), by=CENSUS)

    def _changed_consent(self) -> ConsentBook | None:
        """Blocking: the consent file when it changed since last read (an operator's `bedside consent set`)."""
        path = self.settings.consent_path
        try:
            mtime: int | None = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if not path or mtime == self._consent_mtime:
            return None
        return self._read_consent()

    def _take_consent(self, book: ConsentBook) -> None:
        """In the loop: the new book, each change said and audited."""
        before, self.consent = self.consent, book
        for patient, entry in book.entries().items():
            if before.state(patient) is not entry.state:
                fields = {"patient_id": patient, "state": entry.state.value, "source": entry.source}
                self.audit("consent_changed", fields)
                detail = f"consent of {patient} {entry.state.value} ({entry.source})"
                self.publish(TechnicalEvent(ADT_DEVICE, TechnicalKind.CONSENT_CHANGED, detail=detail))

    async def run(self) -> None:
        """Persist what changed, pick up operator consent changes; the ADT listener
        runs as its own task (`adt_listener`)."""
        while True:
            try:
                async with asyncio.timeout(self.settings.consent_poll_s):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            try:
                await asyncio.to_thread(self._save)
                book = await asyncio.to_thread(self._changed_consent)
                if book is not None:
                    self._take_consent(book)
            except ClinicalFileError as exc:  # said, and tried again next time: the memory state stands
                log.error("clinical files: %s", exc)
                self._dirty.set()
                await asyncio.sleep(self.settings.consent_poll_s)

    def census_file(self) -> Path | None:
        return Path(self.settings.census_path) if self.settings.census_path else None
