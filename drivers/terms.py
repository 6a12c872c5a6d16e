"""MDC terms more than one device family reports (oximetry), defined once.

One code per measurement whichever device sends it, so one rule covers the same
measurement from every family. Family tables (drivers/<family>/terms.py) use these.
"""

from __future__ import annotations

from typing import Final

from appliance.core.terms import Term

__all__ = ["PERF", "PULSE", "SPCO", "SPMET", "SPO2"]

SPO2: Final = Term(
    "MDC_PULS_OXIM_SAT_O2",
    150456,
    "%",
    "IHE PCD TF-2 examples (150456^MDC_PULS_OXIM_SAT_O2^MDC); shared/protocols/intellivue-mib.md §8",
)
PULSE: Final = Term(
    "MDC_PULS_OXIM_PULS_RATE",
    149530,
    "/min",
    "11073-10101 term 0x481A (18458); OpenICE intellivue.map maps oximeter pulse here",
)
PERF: Final = Term(
    "MDC_PULS_OXIM_PERF_REL",
    150448,
    "%",
    "IntelliVue NOM_PULS_OXIM_PERF_REL 0x4BB0; IHE PCD TF-2 example (Perf 3.9); intellivue-mib.md §8",
)
SPCO: Final = Term(
    "MDC_CONC_HB_CO_GEN",
    160128,
    "%",
    "IntelliVue NOM_CONC_HB_CO_GEN 0x7180 (Philips Data Export attribute list), partition rule",
)
SPMET: Final = Term(
    "MDC_CONC_HB_MET_GEN",
    160124,
    "%",
    "IntelliVue NOM_CONC_HB_MET_GEN 0x717C (Philips Data Export attribute list), partition rule",
)
