"""MEDIBUS codepage 1 code -> MDC term (shared/protocols/medibus.md §6); only codes with
a sourced MDC term."""

from __future__ import annotations

from appliance.core.terms import Term
from drivers.terms import PULSE, SPO2

__all__ = ["medibus_terms"]


def medibus_terms() -> dict[str, Term]:
    return {
        "CP1_EB": SPO2,
        "CP1_E1": PULSE,
        "CP1_E6": Term("MDC_AWAY_CO2_ET", 151728, "mm[Hg]", "medibus.md §6 E6 etCO2 mmHg; intellivue-mib.md §8"),
        # E3 is etCO2 in kPa: the normalizer converts it to mmHg (never both at once on one device).
        "CP1_E3": Term("MDC_AWAY_CO2_ET", 151728, "mm[Hg]", "medibus.md §6 E3 etCO2 kPa; intellivue-mib.md §8"),
        "CP1_F0": Term("MDC_VENT_CONC_AWAY_O2_INSP", 160920, "%", "medibus.md §6 F0 FiO2; intellivue-mib.md §8"),
        "CP1_D6": Term("MDC_AWAY_RESP_RATE", 151570, "/min", "medibus.md §6 D6 total breathing frequency; §8"),
        "CP1_78": Term(
            "MDC_VENT_PRESS_AWAY_END_EXP_POS", 151976, "cm[H2O]", "medibus.md §6 78 PEEP; RTMMS term 151976"
        ),
    }
