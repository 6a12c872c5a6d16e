"""Plausible range per MDC term: what a sensor on a living patient can report at all.

A value outside its term's range (SpO2 126 %, pulse 509 /min: noise read through a
format without a checksum), or a number that is not finite (NaN, inf, 1e400 sent
as text), is not a measurement: the normalizer marks it invalid with a flag, so
it can neither raise nor clear a physiological alarm (IEC 60601-1-8 treats it as
the technical condition "invalid measurement").

These are physical bounds, deliberately wider than every device's display range
(oximeter PR 25-240 /min, patient-monitor HR up to 300 /min, NIBP cuffs to 300 mmHg,
capnography to 150 mmHg): a genuine extreme value must never be refused. They are
not alarm limits, which live in the rule files. Each range is in the term's UCUM
unit and applies only when the observation carries that unit.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PLAUSIBLE", "plausible_range"]

_PERCENT: Final = (0.0, 100.0, "%")
_RATE: Final = (0.0, 350.0, "/min")  # adult to neonatal heart and pulse rates, with margin
_ART: Final = (-50.0, 400.0, "mm[Hg]")  # invasive pressures read below zero when zeroed high
_NIBP: Final = (0.0, 350.0, "mm[Hg]")
_TEMP: Final = (0.0, 50.0, "Cel")  # skin and ambient-cooled probes read low; no body reads above 50
_ST: Final = (-30.0, 30.0, "mm")

PLAUSIBLE: Final[dict[str, tuple[float, float, str]]] = {
    "MDC_PULS_OXIM_SAT_O2": _PERCENT,
    "MDC_CONC_HB_CO_GEN": _PERCENT,
    "MDC_CONC_HB_MET_GEN": _PERCENT,
    "MDC_VENT_CONC_AWAY_O2_INSP": _PERCENT,
    "MDC_PULS_OXIM_PERF_REL": _PERCENT,
    "MDC_PULS_OXIM_PULS_RATE": _RATE,
    "MDC_PULS_RATE": _RATE,
    "MDC_PULS_RATE_NON_INV": _RATE,
    "MDC_ECG_HEART_RATE": _RATE,
    "MDC_ECG_V_P_C_CNT": _RATE,
    "MDC_RESP_RATE": (0.0, 200.0, "/min"),  # high-frequency ventilation counts to ~150
    "MDC_AWAY_RESP_RATE": (0.0, 200.0, "/min"),
    "MDC_ECG_TIME_PD_RR_GL": (0.0, 10_000.0, "ms"),
    "MDC_AWAY_CO2_ET": (0.0, 200.0, "mm[Hg]"),
    "MDC_AWAY_CO2_INSP_MIN": (0.0, 200.0, "mm[Hg]"),
    "MDC_VENT_PRESS_AWAY_END_EXP_POS": (0.0, 100.0, "cm[H2O]"),
    "MDC_PRESS_BLD_ART_SYS": _ART,
    "MDC_PRESS_BLD_ART_DIA": _ART,
    "MDC_PRESS_BLD_ART_MEAN": _ART,
    "MDC_PRESS_BLD_ART_ABP_SYS": _ART,
    "MDC_PRESS_BLD_ART_ABP_DIA": _ART,
    "MDC_PRESS_BLD_ART_ABP_MEAN": _ART,
    "MDC_PRESS_BLD_ART_PULM_SYS": _ART,
    "MDC_PRESS_BLD_ART_PULM_DIA": _ART,
    "MDC_PRESS_BLD_ART_PULM_MEAN": _ART,
    "MDC_PRESS_BLD_VEN_CENT_MEAN": _ART,
    "MDC_PRESS_INTRA_CRAN": _ART,
    "MDC_PRESS_BLD_NONINV_SYS": _NIBP,
    "MDC_PRESS_BLD_NONINV_DIA": _NIBP,
    "MDC_PRESS_BLD_NONINV_MEAN": _NIBP,
    "MDC_TEMP": _TEMP,
    "MDC_TEMP_BODY": _TEMP,
    "MDC_TEMP_BLD": _TEMP,
    "MDC_TEMP_CORE": _TEMP,
    "MDC_TEMP_ESOPH": _TEMP,
    "MDC_TEMP_RECT": _TEMP,
    "MDC_TEMP_SKIN": _TEMP,
    "MDC_MASS_BODY_ACTUAL": (0.0, 700.0, "kg"),
    "MDC_LEN_BODY_ACTUAL": (0.0, 300.0, "cm"),
    "MDC_RATIO_MASS_BODY_LEN_SQ": (0.0, 250.0, "kg/m2"),
    **{f"MDC_ECG_AMPL_ST_{lead}": _ST for lead in ("I", "II", "III", "AVR", "AVL", "AVF", "V", "MCL")},
}
# Glucose keeps the meter's unit (no molar-mass conversion on the box): a range per unit.
_GLUCOSE_METRICS: Final = (
    "MDC_CONC_GLU_GEN",
    "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD",
    "MDC_CONC_GLU_CAPILLARY_PLASMA",
    "MDC_CONC_GLU_VENOUS_WHOLEBLOOD",
    "MDC_CONC_GLU_VENOUS_PLASMA",
    "MDC_CONC_GLU_ARTERIAL_WHOLEBLOOD",
    "MDC_CONC_GLU_ARTERIAL_PLASMA",
    "MDC_CONC_GLU_CONTROL",
    "MDC_CONC_GLU_ISF",
)
_GLUCOSE_RANGES: Final = {"mg/dL": (0.0, 3000.0), "mmol/L": (0.0, 170.0)}


def plausible_range(metric: str, unit: str) -> tuple[float, float] | None:
    """(low, high) inclusive for the metric in this unit; None when no range is known."""
    if metric in _GLUCOSE_METRICS:
        return _GLUCOSE_RANGES.get(unit)
    row = PLAUSIBLE.get(metric)
    if row is None or row[2] != unit:
        return None
    return row[0], row[1]
