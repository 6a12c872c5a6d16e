"""Bluetooth LE health-profile labels -> IEEE 11073-10101 terms (ble-health.md).

Codes are partition 2 (SCADA) terms, code = 2 * 65536 + term, as the personal
health device specialisations (11073-104xx) list them; the term numbers were
read from the Antidote IEEE 11073-20601 nomenclature header (nomenclature.h:
MDC_TEMP_BODY 19292, MDC_PRESS_BLD_NONINV_* 18949-18951, MDC_PULS_RATE_NON_INV
18474, MDC_MASS_BODY_ACTUAL 57664, MDC_LEN_BODY_ACTUAL 57668,
MDC_RATIO_MASS_BODY_LEN_SQ 57680, MDC_CONC_GLU_* 28948 and 29112-29140).
Energy expended has no agreed vital-sign term here: counted and skipped.
Temperature site travels as a `site_*` flag on MDC_TEMP_BODY rather than as a
site-specific term the thermometer profile does not require.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.core.terms import Term

__all__ = ["ble_terms"]


def _scada(term: int) -> int:
    return 2 * 65536 + term


_H: str = "Antidote nomenclature.h (IEEE 11073-20601 term numbers), partition rule"

# Glucose by sample type; the unit stays the device's (mg/dL or mmol/L): no
# molar-mass conversion is done on the box.
_GLUCOSE = (
    ("GLU_CAP_WB", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", 29112),
    ("GLU_CAP_PLASMA", "MDC_CONC_GLU_CAPILLARY_PLASMA", 29116),
    ("GLU_VEN_WB", "MDC_CONC_GLU_VENOUS_WHOLEBLOOD", 29120),
    ("GLU_VEN_PLASMA", "MDC_CONC_GLU_VENOUS_PLASMA", 29124),
    ("GLU_ART_WB", "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD", 29128),
    ("GLU_ART_PLASMA", "MDC_CONC_GLU_ARTERIAL_PLASMA", 29132),
    ("GLU_CONTROL", "MDC_CONC_GLU_CONTROL", 29136),
    ("GLU_ISF", "MDC_CONC_GLU_ISF", 29140),
    # Undetermined sample types have no own term: the generic glucose concentration.
    ("GLU_UNDET_WB", "MDC_CONC_GLU_GEN", 28948),
    ("GLU_UNDET_PLASMA", "MDC_CONC_GLU_GEN", 28948),
)


def ble_terms(make: type[Term], spo2: Term, pulse: Term, perf: Term) -> dict[str, Term]:
    terms = {
        "HR": make("MDC_ECG_HEART_RATE", 147842, "/min", "Heart Rate Measurement; IntelliVue NOM_ECG_CARD_BEAT_RATE"),
        "RR": make("MDC_ECG_TIME_PD_RR_GL", 147240, "ms", "MII ECG profile examples (147240 ms)"),
        "SPO2": spo2,
        "PR": pulse,
        "PAI": perf,
        "SPO2_FAST": spo2,
        "PR_FAST": pulse,
        "SPO2_SLOW": spo2,
        "PR_SLOW": pulse,
        "TEMP": make("MDC_TEMP_BODY", _scada(19292), "Cel", _H),
        "NIBP_SYS": make("MDC_PRESS_BLD_NONINV_SYS", _scada(18949), "mm[Hg]", _H),
        "NIBP_DIA": make("MDC_PRESS_BLD_NONINV_DIA", _scada(18950), "mm[Hg]", _H),
        "NIBP_MEAN": make("MDC_PRESS_BLD_NONINV_MEAN", _scada(18951), "mm[Hg]", _H),
        "NIBP_PR": make("MDC_PULS_RATE_NON_INV", _scada(18474), "/min", _H),
        "WEIGHT": make("MDC_MASS_BODY_ACTUAL", _scada(57664), "kg", _H),
        "HEIGHT": make("MDC_LEN_BODY_ACTUAL", _scada(57668), "cm", _H),
        "BMI": make("MDC_RATIO_MASS_BODY_LEN_SQ", _scada(57680), "kg/m2", _H),
    }
    terms |= {label: make(metric, _scada(term), "", _H) for label, metric, term in _GLUCOSE}
    return terms
