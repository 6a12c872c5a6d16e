"""The audit chain, sans-IO: entries linked by hash and signed with the box key.

Each entry's `hash` is SHA-256 over its canonical JSON (every field but `hash` and
`sig`, keys sorted, ASCII), which includes `prev`, the previous entry's hash: an
edit changes the hash, a deletion or reordering breaks the link or the sequence.
`sig` is ECDSA P-256 / SHA-256 over the hash, made with the box's private key (the
uplink's client key unless `[audit] key_path` names another): whoever
edits an entry and recomputes the hashes still cannot sign. `verify_chain` names
the first broken link. What a chain alone cannot show: that entries after the
last one were deleted (a consumer that collected them on the `audit` topic can).

This module does no I/O and keeps no state; `appliance.clinical.audit` owns the head.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.core.errors import BedsideInputError

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditFormatError",
    "Verdict",
    "canonical",
    "from_line",
    "key_id",
    "make_entry",
    "to_line",
    "verify_chain",
]

FORMAT_VERSION: Final = 1
GENESIS: Final = "0" * 64  # `prev` of the first entry of a chain
_KEYS: Final = frozenset({"v", "gw", "seq", "time", "kind", "fields", "prev", "hash", "sig"})


class AuditFormatError(BedsideInputError, ValueError):
    """A line is not an audit entry (exit 2, one line naming where)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    gw: str  # the gateway id: a broker collects several boxes' chains
    seq: int  # 1 for the first entry of a chain, then +1
    time_ms: int  # epoch milliseconds UTC, the gateway's clock
    kind: str
    fields: Mapping[str, Any]
    prev: str
    hash: str
    sig: str

    def body(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "gw": self.gw, "seq": self.seq, "time": self.time_ms, "kind": self.kind,
                "fields": dict(self.fields), "prev": self.prev}  # fmt: skip

    def to_json_dict(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash, "sig": self.sig}


def canonical(body: Mapping[str, Any]) -> bytes:
    # Sorted keys and ASCII: the same bytes whoever re-serialises the entry.
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the public key (SubjectPublicKeyInfo DER), hex: names the signing key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def make_entry(
    key: ec.EllipticCurvePrivateKey,
    gw: str,
    seq: int,
    *,
    time_ms: int,
    kind: str,
    fields: Mapping[str, Any],
    prev: str,
) -> AuditEntry:
    """The next entry after `prev`, hashed and signed. `fields` must be JSON (no NaN)."""
    draft = AuditEntry(gw, seq, time_ms, kind, dict(fields), prev, "", "")
    digest = _digest(draft.body())
    sig = key.sign(digest.encode(), ec.ECDSA(hashes.SHA256()))
    return AuditEntry(gw, seq, time_ms, kind, dict(fields), prev, digest, base64.b64encode(sig).decode())


def to_line(entry: AuditEntry) -> str:
    return canonical(entry.to_json_dict()).decode()


def from_line(line: str, where: str = "line") -> AuditEntry:
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise AuditFormatError(f"{where}: not JSON") from exc
    if not isinstance(raw, dict) or set(raw) != _KEYS:
        raise AuditFormatError(f"{where}: not an audit entry (keys {', '.join(sorted(_KEYS))})")
    if raw["v"] != FORMAT_VERSION:
        raise AuditFormatError(f"{where}: audit format {raw['v']!r}, this gateway reads {FORMAT_VERSION}")
    types = (("gw", str), ("seq", int), ("time", int), ("kind", str), ("fields", dict), ("prev", str),
             ("hash", str), ("sig", str))  # fmt: skip
    for name, typ in types:
        if not isinstance(raw[name], typ) or isinstance(raw[name], bool):
            raise AuditFormatError(f"{where}: {name} must be {typ.__name__}")
    return AuditEntry(raw["gw"], raw["seq"], raw["time"], raw["kind"], raw["fields"], raw["prev"], raw["hash"],
                      raw["sig"])  # fmt: skip


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int  # entries checked (duplicates not counted)
    first_seq: int | None
    last_seq: int | None
    broken_at: int | None = None  # 1-based position in the input of the first broken link
    reason: str = ""
    duplicates: int = 0  # exact re-deliveries skipped (a QoS 1 resend after a reconnect)

    def line(self) -> str:
        if not self.ok:
            return f"broken at entry {self.broken_at}: {self.reason}"
        span = "no entries" if self.first_seq is None else f"seq {self.first_seq}..{self.last_seq}"
        dup = f", {self.duplicates} duplicates skipped" if self.duplicates else ""
        return f"ok: {self.checked} entries, {span}, hashes, links and signatures verified{dup}"


def _problem(entry: AuditEntry, before: AuditEntry | None, public_key: ec.EllipticCurvePublicKey) -> str:
    """Why `entry` does not follow `before` (None: the first entry read), or ''."""
    if _digest(entry.body()) != entry.hash:
        return f"seq {entry.seq}: content does not match its hash (edited)"
    try:
        public_key.verify(base64.b64decode(entry.sig, validate=True), entry.hash.encode(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return f"seq {entry.seq}: signature does not verify with the box key (forged or re-hashed)"
    if before is None:
        if entry.seq == 1 and entry.prev != GENESIS:
            return "seq 1: does not start a chain (prev is not the genesis value)"
        return ""
    if entry.seq <= before.seq:
        return f"seq {entry.seq} after seq {before.seq} (reordered)"
    if entry.seq != before.seq + 1:
        return f"seq {entry.seq} after seq {before.seq}: {entry.seq - before.seq - 1} entries missing (deleted)"
    if entry.prev != before.hash:
        return f"seq {entry.seq}: prev does not match the hash of seq {before.seq} (link broken)"
    return ""


def verify_chain(
    entries: Iterable[AuditEntry], public_key: ec.EllipticCurvePublicKey, *, from_genesis: bool = False
) -> Verdict:
    """Check hashes, signatures, sequence and links in input order; stop at the first break.

    A chain exported from the box may start after seq 1 (older entries were purged by
    retention): accepted unless `from_genesis`. An entry identical to one already
    verified (same seq and hash: a publish repeated after a lost PUBACK) is skipped and
    counted; it adds nothing. The same seq with other content is a break."""
    before: AuditEntry | None = None
    first: int | None = None
    checked = dups = 0
    verified: dict[int, str] = {}
    for position, entry in enumerate(entries, start=1):
        known = verified.get(entry.seq)
        if before is not None and entry.gw != before.gw:
            problem = f"seq {entry.seq}: gateway {entry.gw!r} after {before.gw!r} (chains mixed: verify one gateway)"
        elif known == entry.hash:
            dups += 1
            continue
        else:
            problem = f"seq {entry.seq} again with other content" if known is not None else ""
            problem = problem or _problem(entry, before, public_key)
        if not problem and before is None and from_genesis and entry.seq != 1:
            problem = f"starts at seq {entry.seq}, not at the genesis"
        if problem:
            last = before.seq if before else None
            return Verdict(False, checked, first, last, position, problem, dups)
        first = entry.seq if first is None else first
        before = entry
        verified[entry.seq] = entry.hash
        checked += 1
    return Verdict(True, checked, first, before.seq if before else None, duplicates=dups)
