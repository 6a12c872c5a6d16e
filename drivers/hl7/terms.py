"""HL7 labels carry their own term: `code^REFID` from OBX-3, the unit from OBX-6.

A code another family already maps is filed under that family's term, so a metric
sent over HL7 (e.g. 147842 as MDC_ECG_CARD_BEAT_RATE) reaches the same rules as from
a monitor. Where families disagree on a unit, the later family in the registry's
order wins (the monitor tables come last: PCD-01 messages use the 11073
dimensions, e.g. PERF_REL dimensionless as the Philips monitors send it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from appliance.core.terms import Term

__all__ = ["CODE_NAME_MISMATCH", "REFID_ALIASES", "UNKNOWN_CODE", "CarriedTerms"]

UNKNOWN_CODE: Final = "unknown_code"
CODE_NAME_MISMATCH: Final = "code_name_mismatch"
# Reference ids that name the same code under an older or alternative 11073-10101
# name: not a mismatch (the Philips PCD-01 example sends 147842 this way).
REFID_ALIASES: Final = {"MDC_ECG_CARD_BEAT_RATE": "MDC_ECG_HEART_RATE"}


class CarriedTerms:
    """label -> term, against the label tables of the other families (`tables`)."""

    def __init__(self, tables: Iterable[Mapping[str, Term]]) -> None:
        terms = [term for table in tables for term in table.values()]
        self._by_code = {term.code: term for term in terms}
        self._by_name = {term.metric: term for term in terms}

    def __call__(self, label: str) -> Term | None:
        code, _, refid = label.partition("^")
        if not code.isdigit() or not refid.startswith("MDC_"):
            return None
        known = self._by_code.get(int(code))
        if known is not None:
            return known
        # An unknown code under a known name (999999^MDC_PULS_OXIM_SAT_O2) is filed
        # under that name's term, with its unit and range: taking the message's own
        # unit would let SpO2 in per-mille (850) pass as a valid value and clear alarms.
        named = self._by_name.get(refid)
        if named is not None:
            return named
        return Term(refid, int(code), "", "carried by the HL7 message (OBX-3); unit from OBX-6")

    def judge(self, label: str) -> str | None:
        """What is wrong with a `code^REFID` label, if anything: `unknown_code` (neither
        the code nor the name is in any table: the value is filed under a term made
        from the message alone), `code_name_mismatch` (a known code under another
        name, or an unknown code under a known name). Either way the sender and we
        disagree on what was measured, so the HL7 family grades both invalid: such a
        value is kept for the record but never raises or clears an alarm."""
        code, _, refid = label.partition("^")
        if not code.isdigit():
            return None
        known = self._by_code.get(int(code))
        if known is not None:
            same = refid in (known.metric, "") or REFID_ALIASES.get(refid) == known.metric
            return None if same else CODE_NAME_MISMATCH
        return CODE_NAME_MISMATCH if refid in self._by_name else UNKNOWN_CODE
