"""Code systems of the FHIR output: MDC (always), LOINC where one is known, vital-signs profiles.

Every observation carries its IEEE 11073-10101 (MDC) code, the gateway's own
vocabulary, in the system the Point-of-Care Device IG uses. A LOINC code is
added only where the mapping is one we can stand behind; the FHIR R4 vital-signs
profile is claimed only where its required LOINC code applies to the measurement
(heart rate, respiratory rate, oxygen saturation, body temperature, weight,
height, BMI). Blood pressure parts carry their LOINC codes without the profile,
which R4 defines for the 85354-9 panel: `fhir.blood_pressure_panel` makes that
from a cuff's systolic and diastolic of one measurement. No glucose LOINC: those codes fix the unit and specimen and the
meters' units vary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["LOINC", "MDC", "UCUM", "VITAL_SIGNS_CATEGORY", "Coding", "LoincMap", "loinc_for"]

MDC: Final = "urn:iso:std:iso:11073:10101"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
VITAL_SIGNS_CATEGORY: Final = {
    "coding": [{"system": CATEGORY_SYSTEM, "code": "vital-signs", "display": "Vital Signs"}],
    "text": "Vital Signs",
}
_PROFILE: Final = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True, slots=True)
class Coding:
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class LoincMap:
    codings: tuple[Coding, ...]  # the first is the one the profile requires, if any
    profile: str = ""  # the R4 vital-signs profile's canonical URL, "" if none applies
    vital_sign: bool = True  # category vital-signs

    def profile_url(self) -> str:
        return _PROFILE + self.profile if self.profile else ""


_HR: Final = Coding("8867-4", "Heart rate")
_RR: Final = Coding("9279-1", "Respiratory rate")
_TEMP: Final = Coding("8310-5", "Body temperature")
_TABLE: Final[dict[str, LoincMap]] = {
    "MDC_ECG_HEART_RATE": LoincMap((_HR,), "heartrate"),
    "MDC_PULS_RATE": LoincMap((_HR,), "heartrate"),
    "MDC_PULS_RATE_NON_INV": LoincMap((_HR,), "heartrate"),
    "MDC_PULS_OXIM_PULS_RATE": LoincMap((_HR, Coding("8889-8", "Heart rate by Pulse oximetry")), "heartrate"),
    "MDC_PULS_OXIM_SAT_O2": LoincMap(
        (
            Coding("2708-6", "Oxygen saturation in Arterial blood"),
            Coding("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
        ),
        "oxygensat",
    ),
    "MDC_RESP_RATE": LoincMap((_RR,), "resprate"),
    "MDC_AWAY_RESP_RATE": LoincMap((_RR,), "resprate"),
    "MDC_TEMP": LoincMap((_TEMP,), "bodytemp"),
    "MDC_TEMP_BODY": LoincMap((_TEMP,), "bodytemp"),
    "MDC_TEMP_CORE": LoincMap((_TEMP, Coding("8329-5", "Body temperature - Core")), "bodytemp"),
    "MDC_TEMP_RECT": LoincMap((_TEMP, Coding("8332-9", "Rectal temperature")), "bodytemp"),
    "MDC_MASS_BODY_ACTUAL": LoincMap((Coding("29463-7", "Body weight"),), "bodyweight"),
    "MDC_LEN_BODY_ACTUAL": LoincMap((Coding("8302-2", "Body height"),), "bodyheight"),
    "MDC_RATIO_MASS_BODY_LEN_SQ": LoincMap((Coding("39156-5", "Body mass index (BMI) [Ratio]"),), "bmi"),
    "MDC_PRESS_BLD_NONINV_SYS": LoincMap((Coding("8480-6", "Systolic blood pressure"),)),
    "MDC_PRESS_BLD_NONINV_DIA": LoincMap((Coding("8462-4", "Diastolic blood pressure"),)),
    "MDC_PRESS_BLD_NONINV_MEAN": LoincMap((Coding("8478-0", "Mean blood pressure"),)),
    "MDC_VENT_CONC_AWAY_O2_INSP": LoincMap((Coding("3150-0", "Inhaled oxygen concentration"),), vital_sign=False),
}


def loinc_for(metric: str) -> LoincMap | None:
    """The LOINC codes (and vital-signs profile) of an MDC metric, None if we map none."""
    return _TABLE.get(metric)
