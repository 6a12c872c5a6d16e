"""Cost of the clinical plane: what it adds per observation on the hot path, per audit
entry in the caller's turn, and how fast a chain verifies.

Run: .venv/bin/python -m tests.bench.bench_clinical
- `on_record` per observation (the gateway's subscriber), charted (FHIR mapping and
  JSON) and not charted (inside the interval: the common case at 1/min);
- `AuditTrail.record` (canonical JSON, SHA-256, ECDSA P-256 signature);
- `verify_chain` per entry (hash and signature check);
- one journal commit of 1,000 FHIR resources (off the loop, in the journal's thread).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from appliance.clinical.audit import AuditTrail
from appliance.clinical.audit_fhir import AuditFhirPlane
from appliance.clinical.audit_settings import AuditSettings, FhirSettings
from appliance.clinical.chain import AuditEntry, verify_chain
from appliance.core.model import Observation
from appliance.core.vocab import Quality
from appliance.uplink.pki import write_key
from rules.spec import DEFAULT_RULES_PATH, load_rules
from tests.bench.disk import disk_tempdir

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples)


def obs(i: int, step_s: float) -> Observation:
    t = T0 + timedelta(seconds=i * step_s)
    return Observation(f"{i:032x}", "MDC_PULS_OXIM_SAT_O2", 150456, 97.0, "%", t, t, Quality.VALID, "m1", "ICU-1",
                       "MRN-1")  # fmt: skip


def measure(scale: float = 1.0) -> dict[str, float]:
    """The figures above; `scale` shrinks the loops (the CI smoke test)."""
    key = ec.generate_private_key(ec.SECP256R1())
    n = lambda count: max(10, int(count * scale))  # noqa: E731
    with disk_tempdir() as tmp:
        write_key(Path(tmp) / "box.key", key)
        plane = AuditFhirPlane(
            AuditSettings(journal_path=str(Path(tmp) / "c.db")), FhirSettings(),
            audit_key_path=str(Path(tmp) / "box.key"),
            seal_key_path=str(Path(tmp) / "s.key"), gateway_id="gw", ruleset=load_rules(DEFAULT_RULES_PATH),
            now_ms=lambda: 0, protocols={"m1": "masimo"},
        )  # fmt: skip
        charted = per_call_us(lambda i: plane.on_record(obs(i + 10**6, 61.0)), n(2000))
        plane.journal._clinical.clear()
        skipped = per_call_us(lambda i: plane.on_record(obs(i, 0.001)), n(20000))
        made: list[AuditEntry] = []
        trail = AuditTrail(key, "gw", lambda: 0, made.append)
        ack = {"bed": "ICU-1", "uid": 1000, "user": "nurse"}
        record = per_call_us(lambda i: trail.record("alarm_ack", ack), n(500))
        t = time.perf_counter()
        assert verify_chain(made, key.public_key()).ok
        verify = (time.perf_counter() - t) / len(made) * 1e6
        for i in range(1000):
            plane.on_record(obs(i + 2 * 10**6, 61.0))
        t = time.perf_counter()
        asyncio.run(plane.journal.commit())
        commit_ms = (time.perf_counter() - t) * 1000
        plane.close()
    return {"charted_us": charted, "skipped_us": skipped, "record_us": record, "verify_us": verify,
            "commit_ms": commit_ms}  # fmt: skip


def main() -> None:
    m = measure()
    print(f"on_record, charted (FHIR + JSON):      {m['charted_us']:8.1f} us/observation")
    print(f"on_record, inside the interval:        {m['skipped_us']:8.2f} us/observation")
    print(f"AuditTrail.record (hash + ECDSA sign): {m['record_us']:8.1f} us/entry")
    print(f"verify_chain:                          {m['verify_us']:8.1f} us/entry")
    print(f"journal commit of 1,000 resources:     {m['commit_ms']:8.1f} ms (journal thread, sealed, fsync)")


if __name__ == "__main__":
    main()
