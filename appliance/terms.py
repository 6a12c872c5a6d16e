"""Device label -> IEEE 11073-10101 term and UCUM unit, per device family.

Every row cites where the mapping comes from. MDC code = partition * 65536 + term
code (partition 2 = SCADA). Labels not listed here are device values without an
agreed MDC term (Masimo PVI, DESAT, PIDELTA, SpHb, SpOC; Nonin's extended and
beat-to-beat values): the normalizer counts and skips them rather than invent
codes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from appliance.terms_ble import ble_terms
from appliance.terms_datex import datex_terms
from appliance.terms_intellivue import intellivue_terms

__all__ = ["TERMS", "Term", "family_of", "lookup"]


@dataclass(frozen=True, slots=True)
class Term:
    metric: str  # MDC reference id
    code: int  # numeric MDC code
    unit: str  # UCUM
    source: str


_SPO2: Final = Term(
    "MDC_PULS_OXIM_SAT_O2",
    150456,
    "%",
    "IHE PCD TF-2 examples (150456^MDC_PULS_OXIM_SAT_O2^MDC); shared/protocols/intellivue-mib.md §8",
)
_PULSE: Final = Term(
    "MDC_PULS_OXIM_PULS_RATE",
    149530,
    "/min",
    "11073-10101 term 0x481A (18458); OpenICE intellivue.map maps oximeter pulse here",
)
_PERF: Final = Term(
    "MDC_PULS_OXIM_PERF_REL",
    150448,
    "%",
    "IntelliVue NOM_PULS_OXIM_PERF_REL 0x4BB0; IHE PCD TF-2 example (Perf 3.9); intellivue-mib.md §8",
)
_SPCO: Final = Term(
    "MDC_CONC_HB_CO_GEN",
    160128,
    "%",
    "IntelliVue NOM_CONC_HB_CO_GEN 0x7180 (Philips Data Export attribute list), partition rule",
)
_SPMET: Final = Term(
    "MDC_CONC_HB_MET_GEN",
    160124,
    "%",
    "IntelliVue NOM_CONC_HB_MET_GEN 0x717C (Philips Data Export attribute list), partition rule",
)

TERMS: Final[dict[str, dict[str, Term]]] = {
    # shared/protocols/masimo-ascii.md field inventory: SPO2 %, BPM 1/min, PI %, SPCO %, SPMET %.
    "masimo": {"SPO2": _SPO2, "BPM": _PULSE, "PI": _PERF, "SPCO": _SPCO, "SPMET": _SPMET},
    # shared/protocols/nonin.md: HR-D / SpO2-D display values (formats #2, #7, #8).
    "nonin": {"SPO2": _SPO2, "HR": _PULSE},
    # shared/protocols/intellivue-mib.md §8, keyed by physio id (see terms_intellivue).
    "intellivue": intellivue_terms(Term),
    # shared/protocols/datex-s5.md, labels made by drivers/serial/datex_phdb.py.
    "datex": datex_terms(Term),
    # shared/protocols/ble-health.md, labels made by drivers/ble/vitals.py and glucose.py.
    "ble": ble_terms(Term, _SPO2, _PULSE, _PERF),
    # shared/protocols/medibus.md §6 codepage 1 codes; only codes with a sourced MDC term.
    "medibus": {
        "CP1_EB": _SPO2,
        "CP1_E1": _PULSE,
        "CP1_E6": Term("MDC_AWAY_CO2_ET", 151728, "mm[Hg]", "medibus.md §6 E6 etCO2 mmHg; intellivue-mib.md §8"),
        # E3 is etCO2 in kPa: the normalizer converts it to mmHg (never both at once on one device).
        "CP1_E3": Term("MDC_AWAY_CO2_ET", 151728, "mm[Hg]", "medibus.md §6 E3 etCO2 kPa; intellivue-mib.md §8"),
        "CP1_F0": Term("MDC_VENT_CONC_AWAY_O2_INSP", 160920, "%", "medibus.md §6 F0 FiO2; intellivue-mib.md §8"),
        "CP1_D6": Term("MDC_AWAY_RESP_RATE", 151570, "/min", "medibus.md §6 D6 total breathing frequency; §8"),
        "CP1_78": Term(
            "MDC_VENT_PRESS_AWAY_END_EXP_POS", 151976, "cm[H2O]", "medibus.md §6 78 PEEP; RTMMS term 151976"
        ),
    },
}


def family_of(protocol: str) -> str:
    """`nonin-2` -> `nonin`: variants of one family share a label table."""
    return protocol.split("-", 1)[0]


# code -> the term other families already use for it, so a metric sent over HL7
# (e.g. 147842 as MDC_ECG_CARD_BEAT_RATE) reaches the same rules as from a monitor.
# Where families disagree on a unit, the monitor tables win (last below): PCD-01
# messages use the 11073 dimensions, e.g. PERF_REL dimensionless as IntelliVue sends it.
_HL7_PRECEDENCE: Final = ("masimo", "nonin", "ble", "medibus", "datex", "intellivue")
_BY_CODE: Final = {term.code: term for family in _HL7_PRECEDENCE for term in TERMS[family].values()}
_BY_NAME: Final = {term.metric: term for family in _HL7_PRECEDENCE for term in TERMS[family].values()}


def _carried(label: str) -> Term | None:
    """HL7 labels carry their own term: `code^REFID` from OBX-3; unit from OBX-6."""
    code, _, refid = label.partition("^")
    if not code.isdigit() or not refid.startswith("MDC_"):
        return None
    known = _BY_CODE.get(int(code))
    if known is not None:
        return known
    # An unknown code under a known name (999999^MDC_PULS_OXIM_SAT_O2) is filed
    # under that name's term, with its unit and range: taking the message's own
    # unit would let SpO2 in per-mille (850) pass as a valid value and clear alarms.
    named = _BY_NAME.get(refid)
    if named is not None:
        return named
    return Term(refid, int(code), "", "carried by the HL7 message (OBX-3); unit from OBX-6")


# Called for every reading on the hot path; the tables never change while the process
# runs. Bounded because HL7 labels come from the sender (any number of distinct ones).
@functools.lru_cache(maxsize=4096)
def lookup(protocol: str, label: str) -> Term | None:
    if family_of(protocol) == "hl7":
        return _carried(label)
    return TERMS.get(family_of(protocol), {}).get(label)
