"""The audit trail: who did what at the bed, as one hash chain signed with the box key.

`AuditTrail.record(kind, fields)` is the hook every component is given
(`Callable[[str, Mapping[str, object]], None]`): pairing changes, releases,
consent changes, alarm acknowledgements and audio pauses (with the operator),
the configuration loaded (its hash), OTA steps, and the arbiter's decisions
aggregated per bed and metric (`ArbiterDigest`, one entry per key and period, so
a flapping source cannot flood the chain). `record` hashes and signs in the
caller's turn (ECDSA P-256, ~0.1 ms) and hands the entry to the journal, which
only buffers: nothing here awaits disk or network, so it may be called from the
alarm path's loop turn.

Kinds in use: chain_started, config_loaded, pairing, unpairing, alarm_ack,
audio_pause, ota_step, arbiter_decisions (and, from the census and consent
components, release, consent, quarantine). Deliberately not here: who may do
what (the control socket's group decides), and storage (`journal.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.arbiter import AuditRecord
from appliance.clinical.chain import GENESIS, AuditEntry, key_id, make_entry
from appliance.core.errors import BedsideConfigError
from appliance.core.keyfiles import check_key_file

__all__ = [
    "ArbiterDigest",
    "AuditHook",
    "AuditKeyError",
    "AuditTrail",
    "config_digest",
    "load_box_key",
]

AuditHook = Callable[[str, Mapping[str, object]], None]
# (bed, metric) pairs the arbiter digest keeps per period; more are counted, not kept.
MAX_DIGEST_KEYS: Final = 1024
MAX_FIELD_CHARS: Final = 1024  # a field value longer than this is cut (entries stay small)


class AuditKeyError(BedsideConfigError):
    """The box key for signing audit entries is missing, open to others or not EC P-256."""


def load_box_key(path: str) -> ec.EllipticCurvePrivateKey:
    check_key_file(path, "audit signing key")
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path}: audit signing key unreadable: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AuditKeyError(f"{path}: audit signing key must be an EC P-256 key (the box's uplink key is)")
    return key


def config_digest(config: object) -> str:
    """SHA-256 of the effective configuration (the parsed dataclasses, canonical JSON)."""
    raw = dataclasses.asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else config
    text = json.dumps(raw, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value[:MAX_FIELD_CHARS] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    return str(value)[:MAX_FIELD_CHARS]


class AuditTrail:
    """The chain's head and the hook. `sink` receives each entry (the journal's offer)."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        gateway_id: str,
        now_ms: Callable[[], int],
        sink: Callable[[AuditEntry], None],
        head: tuple[int, str] | None = None,
    ) -> None:
        self._key = key
        self.gateway_id = gateway_id
        self._now_ms = now_ms
        self._sink = sink
        self.seq, self.head = head if head is not None else (0, GENESIS)
        self.key_id = key_id(key.public_key())
        self.recorded = 0  # entries made since start (`bedside stats`)

    def start(self, reason: str) -> None:
        """The first entry of this run: names the key, and why the chain (re)starts where it does."""
        self.record("chain_started", {"key_id": self.key_id, "continues_seq": self.seq, "reason": reason})

    def record(self, kind: str, fields: Mapping[str, object]) -> None:
        self.append(kind, fields)

    def append(self, kind: str, fields: Mapping[str, object]) -> AuditEntry:
        clean = _jsonable(fields)
        assert isinstance(clean, dict)
        entry = make_entry(
            self._key, self.gateway_id, self.seq + 1, time_ms=self._now_ms(), kind=kind, fields=clean, prev=self.head
        )
        self.seq, self.head = entry.seq, entry.hash
        self.recorded += 1
        self._sink(entry)
        return entry


@dataclass(slots=True)
class _Tally:
    decisions: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    chosen: Counter[str] = field(default_factory=Counter)
    last_chosen: str | None = None
    candidates: set[str] = field(default_factory=set)


@dataclass(slots=True)
class ArbiterDigest:
    """The arbiter's decisions per (bed, metric), said once per period. Pure: the
    caller flushes (the clinical plane's task every `arbiter_digest_s`)."""

    _tallies: dict[tuple[str, str], _Tally] = field(default_factory=dict)
    overflow: int = 0  # decisions for keys beyond MAX_DIGEST_KEYS in this period

    def add(self, record: AuditRecord) -> None:
        key = (record.bed_id, record.metric)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= MAX_DIGEST_KEYS:
                self.overflow += 1
                return
            tally = self._tallies[key] = _Tally()
        tally.decisions += 1
        tally.reasons[record.reason] += 1
        tally.chosen[record.chosen_device or "none"] += 1
        tally.last_chosen = record.chosen_device
        tally.candidates.update(c[0] for c in record.candidates)

    def flush(self, hook: AuditHook, period_s: float) -> int:
        """One `arbiter_decisions` entry per key seen; returns how many were made."""
        tallies, self._tallies = self._tallies, {}
        for (bed, metric), t in sorted(tallies.items()):
            hook("arbiter_decisions", {
                "bed_id": bed, "metric": metric, "period_s": period_s, "decisions": t.decisions,
                "reasons": dict(t.reasons), "chosen": dict(t.chosen), "last_chosen": t.last_chosen,
                "candidates": sorted(t.candidates),
            })  # fmt: skip
        if self.overflow:
            hook("arbiter_decisions", {"overflow": self.overflow, "period_s": period_s})
            self.overflow = 0
        return len(tallies)
