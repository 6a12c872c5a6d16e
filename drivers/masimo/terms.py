"""Masimo ASCII 1 field -> MDC term (shared/protocols/masimo-ascii.md field inventory:
SPO2 %, BPM 1/min, PI %, SPCO %, SPMET %). PVI, DESAT, PIDELTA, SpHb and SpOC have no
agreed MDC term: the normalizer counts and skips them rather than invent codes."""

from __future__ import annotations

from appliance.core.terms import Term
from drivers.terms import PERF, PULSE, SPCO, SPMET, SPO2

__all__ = ["masimo_terms"]


def masimo_terms() -> dict[str, Term]:
    return {"SPO2": SPO2, "BPM": PULSE, "PI": PERF, "SPCO": SPCO, "SPMET": SPMET}
