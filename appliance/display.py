"""How a person reads a value: short label, display unit, fixed decimals per metric.

The records keep UCUM (`mm[Hg]`, `Cel`, `cm[H2O]`) and full precision; only what is
shown changes. One metric is always shown with the same number of decimals
whichever device sent it (PI is `2.1 %` from every oximeter), so two devices at a
bed can be compared at a glance. Pure: no I/O, no state.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["DISPLAY", "Shown", "display_unit", "label", "order", "show"]


@dataclass(frozen=True, slots=True)
class Shown:
    label: str
    decimals: int


# Metric -> label and decimals, in the order the columns appear: haemodynamics and
# oxygenation first, then ventilation (a ventilator's row shows RR, PEEP, FiO2 ...),
# then temperatures and spot checks.
DISPLAY: Final[dict[str, Shown]] = {
    "MDC_ECG_HEART_RATE": Shown("HR", 0),
    "MDC_ECG_CARD_BEAT_RATE": Shown("HR", 0),
    "MDC_PULS_OXIM_SAT_O2": Shown("SpO2", 0),
    "MDC_PULS_OXIM_PULS_RATE": Shown("PR", 0),
    "MDC_PLETH_PULS_RATE": Shown("PRpleth", 0),
    "MDC_PULS_RATE": Shown("Pulse", 0),
    "MDC_PULS_RATE_NON_INV": Shown("PRnbp", 0),
    "MDC_PULS_OXIM_PERF_REL": Shown("PI", 1),
    "MDC_CONC_HB_CO_GEN": Shown("SpCO", 1),
    "MDC_CONC_HB_MET_GEN": Shown("SpMet", 1),
    "MDC_PRESS_BLD_NONINV_SYS": Shown("NBPs", 0),
    "MDC_PRESS_BLD_NONINV_DIA": Shown("NBPd", 0),
    "MDC_PRESS_BLD_NONINV_MEAN": Shown("NBPm", 0),
    "MDC_PRESS_BLD_ART_ABP_SYS": Shown("ABPs", 0),
    "MDC_PRESS_BLD_ART_ABP_DIA": Shown("ABPd", 0),
    "MDC_PRESS_BLD_ART_ABP_MEAN": Shown("ABPm", 0),
    "MDC_PRESS_BLD_ART_SYS": Shown("ARTs", 0),
    "MDC_PRESS_BLD_ART_DIA": Shown("ARTd", 0),
    "MDC_PRESS_BLD_ART_MEAN": Shown("ARTm", 0),
    "MDC_PRESS_BLD_ART_PULM_MEAN": Shown("PAPm", 0),
    "MDC_PRESS_BLD_VEN_CENT_MEAN": Shown("CVP", 0),
    "MDC_PRESS_INTRA_CRAN": Shown("ICP", 0),
    "MDC_RESP_RATE": Shown("RR", 0),
    "MDC_AWAY_RESP_RATE": Shown("awRR", 0),
    "MDC_AWAY_CO2_ET": Shown("etCO2", 0),
    "MDC_AWAY_CO2_INSP_MIN": Shown("imCO2", 0),
    "MDC_VENT_PRESS_AWAY_END_EXP_POS": Shown("PEEP", 0),
    "MDC_VENT_CONC_AWAY_O2_INSP": Shown("FiO2", 0),
    "MDC_VENT_PRESS_AWAY_PEAK": Shown("Ppeak", 0),
    "MDC_VENT_VOL_TIDAL": Shown("VT", 0),
    "MDC_VENT_VOL_MINUTE_AWAY": Shown("MV", 1),
    "MDC_TEMP": Shown("Temp", 1),
    "MDC_TEMP_BODY": Shown("Temp", 1),
    "MDC_TEMP_CORE": Shown("Tcore", 1),
    "MDC_TEMP_SKIN": Shown("Tskin", 1),
    "MDC_TEMP_RECT": Shown("Trect", 1),
    "MDC_TEMP_ESOPH": Shown("Tesoph", 1),
    "MDC_TEMP_BLD": Shown("Tblood", 1),
    "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD": Shown("Glucose", 0),
    "MDC_CONC_GLU_CAPILLARY_PLASMA": Shown("Glucose", 0),
    "MDC_CONC_GLU_GEN": Shown("Glucose", 0),
    "MDC_MASS_BODY_ACTUAL": Shown("Weight", 1),
    "MDC_RATIO_MASS_BODY_LEN_SQ": Shown("BMI", 1),
    "MDC_ECG_TIME_PD_RR_GL": Shown("RRi", 0),
    "MDC_ECG_V_P_C_CNT": Shown("PVC", 0),
}
_ORDER: Final = {metric: i for i, metric in enumerate(DISPLAY)}
_UNITS: Final = {"Cel": "°C", "[degF]": "°F", "1": "", "{beats}/min": "/min", "{breaths}/min": "/min"}
# Decimals for a metric not in DISPLAY, by display unit (others: 2).
_UNIT_DECIMALS: Final = {"/min": 0, "mmHg": 0, "%": 0, "cmH2O": 0, "°C": 1, "°F": 1, "kPa": 1, "mm": 1}
_ANNOTATION: Final = re.compile(r"\{[^}]*\}")


def display_unit(ucum: str) -> str:
    """`mm[Hg]` -> `mmHg`, `cm[H2O]` -> `cmH2O`, `Cel` -> `°C`, annotations dropped."""
    if ucum in _UNITS:
        return _UNITS[ucum]
    return _ANNOTATION.sub("", ucum).replace("[", "").replace("]", "")


def label(metric: str) -> str:
    shown = DISPLAY.get(metric)
    if shown is not None:
        return shown.label
    # An unknown term still gets a short, stable name: the tail of its MDC code.
    parts = [p for p in metric.removeprefix("MDC_").split("_") if p]
    return "_".join(parts[-2:]) if parts else metric


def order(metric: str) -> tuple[int, str]:
    """Sort key: known metrics in DISPLAY's order, then the rest by name."""
    return (_ORDER.get(metric, len(_ORDER)), metric)


def show(metric: str, value: float | None, ucum: str) -> tuple[str, str]:
    """(value text, display unit); `--` for no value."""
    unit = display_unit(ucum)
    if value is None or not math.isfinite(value):
        return "--", unit
    shown = DISPLAY.get(metric)
    decimals = shown.decimals if shown is not None else _UNIT_DECIMALS.get(unit, 2)
    return f"{value:.{decimals}f}", unit
