"""GE S/5 displayed-value label -> IEEE 11073-10101 term (labels made by datex_phdb).

Codes reuse the rows of the IntelliVue table (shared/protocols/intellivue-mib.md §8,
with its evidence) so one rule covers the same measurement from either monitor.
Site-named pressures and temperatures follow the S/5 site label (datex-s5.md §6),
never the channel number. Not mapped (counted by the normalizer, not guessed):
pressure-derived pulse rates (several would compete for one metric), RAP/RVP/LAP
and other sites without an agreed term here, agents, N2O, flow & volume, NMT, SvO2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.core.terms import Term


def _rows() -> list[tuple[str, str, int, str]]:
    # (S/5 label, MDC reference id, code, UCUM unit)
    return [
        ("HR_ECG", "MDC_ECG_HEART_RATE", 147842, "/min"),
        ("HR", "MDC_PULS_RATE", 149514, "/min"),  # the monitor's selected HR source (ECG, BP or pleth)
        ("ST_I", "MDC_ECG_AMPL_ST_I", 131841, "mm"),
        ("ST_II", "MDC_ECG_AMPL_ST_II", 131842, "mm"),
        ("ST_III", "MDC_ECG_AMPL_ST_III", 131901, "mm"),
        ("ST_AVR", "MDC_ECG_AMPL_ST_AVR", 131902, "mm"),
        ("ST_AVL", "MDC_ECG_AMPL_ST_AVL", 131903, "mm"),
        ("ST_AVF", "MDC_ECG_AMPL_ST_AVF", 131904, "mm"),
        ("ST_V", "MDC_ECG_AMPL_ST_V", 131907, "mm"),
        ("ECG_IMP_RR", "MDC_RESP_RATE", 151562, "/min"),
        ("NIBP_SYS", "MDC_PRESS_BLD_NONINV_SYS", 150021, "mm[Hg]"),
        ("NIBP_DIA", "MDC_PRESS_BLD_NONINV_DIA", 150022, "mm[Hg]"),
        ("NIBP_MEAN", "MDC_PRESS_BLD_NONINV_MEAN", 150023, "mm[Hg]"),
        ("NIBP_HR", "MDC_PULS_RATE_NON_INV", 149546, "/min"),
        ("ART_SYS", "MDC_PRESS_BLD_ART_SYS", 150033, "mm[Hg]"),
        ("ART_DIA", "MDC_PRESS_BLD_ART_DIA", 150034, "mm[Hg]"),
        ("ART_MEAN", "MDC_PRESS_BLD_ART_MEAN", 150035, "mm[Hg]"),
        ("ABP_SYS", "MDC_PRESS_BLD_ART_ABP_SYS", 150037, "mm[Hg]"),
        ("ABP_DIA", "MDC_PRESS_BLD_ART_ABP_DIA", 150038, "mm[Hg]"),
        ("ABP_MEAN", "MDC_PRESS_BLD_ART_ABP_MEAN", 150039, "mm[Hg]"),
        ("PA_SYS", "MDC_PRESS_BLD_ART_PULM_SYS", 150045, "mm[Hg]"),
        ("PA_DIA", "MDC_PRESS_BLD_ART_PULM_DIA", 150046, "mm[Hg]"),
        ("PA_MEAN", "MDC_PRESS_BLD_ART_PULM_MEAN", 150047, "mm[Hg]"),
        ("CVP_MEAN", "MDC_PRESS_BLD_VEN_CENT_MEAN", 150087, "mm[Hg]"),
        ("ICP_MEAN", "MDC_PRESS_INTRA_CRAN", 153608, "mm[Hg]"),
        ("T_ESO", "MDC_TEMP_ESOPH", 150372, "Cel"),
        ("T_RECT", "MDC_TEMP_RECT", 188420, "Cel"),
        ("T_SKIN", "MDC_TEMP_SKIN", 150388, "Cel"),
        ("T_CORE", "MDC_TEMP_CORE", 150368, "Cel"),
        ("T_T1", "MDC_TEMP", 150344, "Cel"),  # site not set on the monitor: generic temperature
        ("T_T2", "MDC_TEMP", 150344, "Cel"),
        ("T_T3", "MDC_TEMP", 150344, "Cel"),
        ("T_T4", "MDC_TEMP", 150344, "Cel"),
        ("CO_BLOOD_TEMP", "MDC_TEMP_BLD", 188436, "Cel"),
        ("SPO2", "MDC_PULS_OXIM_SAT_O2", 150456, "%"),
        ("SPO2_PR", "MDC_PULS_OXIM_PULS_RATE", 149530, "/min"),
        ("CO2_ET_P", "MDC_AWAY_CO2_ET", 151728, "mm[Hg]"),  # et % x ambient pressure (datex-s5.md §5)
        ("CO2_RR", "MDC_AWAY_RESP_RATE", 151570, "/min"),
        ("O2_FI", "MDC_VENT_CONC_AWAY_O2_INSP", 160920, "%"),
    ]


def datex_terms(term: type[Term]) -> dict[str, Term]:
    return {
        label: term(metric, code, unit, f"datex-s5.md §5-§6 label {label}; code as intellivue-mib.md §8")
        for label, metric, code, unit in _rows()
    }
