"""IntelliVue physio id -> IEEE 11073-10101 term (label table, fact sheet §8).

Keyed by the physio id in each NuObsValue as `0xHHHH` (the IntelliVue codec's
reading label). MDC code = 2 * 65536 + SCADA term code. Evidence per row:
I = code in IHE PCD TF-2 examples; H = term code in mdpnp himss2015.idl;
O = OpenICE intellivue.map name mapping; d = derived by the partition rule from
the Philips NOM_* code (11073-10101 SCADA partition); L = ST terms derived from
the ECG lead codes of 11073-10102 (ST term = 0x0300 + lead code).
Source of every Philips code: shared/protocols/intellivue-mib.md §8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from appliance.core.terms import Term


def _rows() -> list[tuple[int, str, str, str]]:
    # (physio id, MDC reference id, UCUM unit, evidence)
    return [
        (0x4182, "MDC_ECG_HEART_RATE", "/min", "I H O"),
        (0x4261, "MDC_ECG_V_P_C_CNT", "/min", "d"),
        (0x0301, "MDC_ECG_AMPL_ST_I", "mm", "L"),
        (0x0302, "MDC_ECG_AMPL_ST_II", "mm", "L (fact sheet row ST II)"),
        (0x033D, "MDC_ECG_AMPL_ST_III", "mm", "L"),
        (0x033E, "MDC_ECG_AMPL_ST_AVR", "mm", "L"),
        (0x033F, "MDC_ECG_AMPL_ST_AVL", "mm", "L"),
        (0x0340, "MDC_ECG_AMPL_ST_AVF", "mm", "L"),
        (0x0343, "MDC_ECG_AMPL_ST_V", "mm", "L"),
        (0x034B, "MDC_ECG_AMPL_ST_MCL", "mm", "L"),
        (0x4BB8, "MDC_PULS_OXIM_SAT_O2", "%", "I H O"),
        # Philips sends the oximeter pulse as NOM_PLETH_PULS_RATE (0x4822, partition
        # rule: MDC_PLETH_PULS_RATE 149538). Mapped like OpenICE to the oximeter pulse
        # term so one set of pulse rules covers Masimo, Nonin and IntelliVue.
        (0x4822, "MDC_PULS_OXIM_PULS_RATE", "/min", "O (149538 by partition rule)"),
        (0x4BB0, "MDC_PULS_OXIM_PERF_REL", "1", "I (IHE example: Perf in MDC_DIM_DIMLESS)"),
        (0x480A, "MDC_PULS_RATE", "/min", "d O"),
        (0x4A05, "MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]", "I"),
        (0x4A06, "MDC_PRESS_BLD_NONINV_DIA", "mm[Hg]", "I"),
        (0x4A07, "MDC_PRESS_BLD_NONINV_MEAN", "mm[Hg]", "I"),
        (0xF0E5, "MDC_PULS_RATE_NON_INV", "/min", "I O (Philips private 0xF0E5, mapped by name)"),
        (0x4A11, "MDC_PRESS_BLD_ART_SYS", "mm[Hg]", "d"),
        (0x4A12, "MDC_PRESS_BLD_ART_DIA", "mm[Hg]", "d"),
        (0x4A13, "MDC_PRESS_BLD_ART_MEAN", "mm[Hg]", "d"),
        (0x4A15, "MDC_PRESS_BLD_ART_ABP_SYS", "mm[Hg]", "H"),
        (0x4A16, "MDC_PRESS_BLD_ART_ABP_DIA", "mm[Hg]", "H"),
        (0x4A17, "MDC_PRESS_BLD_ART_ABP_MEAN", "mm[Hg]", "H"),
        (0x4A1D, "MDC_PRESS_BLD_ART_PULM_SYS", "mm[Hg]", "d"),
        (0x4A1E, "MDC_PRESS_BLD_ART_PULM_DIA", "mm[Hg]", "d"),
        (0x4A1F, "MDC_PRESS_BLD_ART_PULM_MEAN", "mm[Hg]", "d"),
        (0x4A47, "MDC_PRESS_BLD_VEN_CENT_MEAN", "mm[Hg]", "d"),
        (0x5808, "MDC_PRESS_INTRA_CRAN", "mm[Hg]", "d"),
        (0x500A, "MDC_RESP_RATE", "/min", "I O"),
        (0x5012, "MDC_AWAY_RESP_RATE", "/min", "d O"),
        (0x50B0, "MDC_AWAY_CO2_ET", "mm[Hg]", "d O"),
        (0x50BA, "MDC_AWAY_CO2_INSP_MIN", "mm[Hg]", "d"),
        (0x7498, "MDC_VENT_CONC_AWAY_O2_INSP", "%", "d"),
        (0x4B48, "MDC_TEMP", "Cel", "d"),
        (0x4B60, "MDC_TEMP_CORE", "Cel", "d"),
        (0x4B74, "MDC_TEMP_SKIN", "Cel", "d"),
        (0x4B64, "MDC_TEMP_ESOPH", "Cel", "d"),
        (0xE004, "MDC_TEMP_RECT", "Cel", "d"),
        (0xE014, "MDC_TEMP_BLD", "Cel", "d O"),
    ]


# Philips-private codes (>= 0xF000) do not follow the partition rule; their MDC
# codes come from the fact sheet's name mapping.
_PRIVATE_CODES: Final = {0xF0E5: 149546}


def intellivue_terms(term: type[Term]) -> dict[str, Term]:
    out = {}
    for physio, metric, unit, evidence in _rows():
        code = _PRIVATE_CODES.get(physio, 2 * 65536 + physio)
        if metric == "MDC_PULS_OXIM_PULS_RATE":
            code = 149530
        out[f"0x{physio:04X}"] = term(metric, code, unit, f"intellivue-mib.md §8, NOM 0x{physio:04X}; {evidence}")
    return out
