"""Nonin display value -> MDC term (shared/protocols/nonin.md: HR-D / SpO2-D of formats
#2, #7, #8). Extended and beat-to-beat values have no agreed term: counted and skipped."""

from __future__ import annotations

from appliance.core.terms import Term
from drivers.terms import PULSE, SPO2

__all__ = ["nonin_terms"]


def nonin_terms() -> dict[str, Term]:
    return {"SPO2": SPO2, "HR": PULSE}
