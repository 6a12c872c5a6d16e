"""The clinical plane: bed census, patient association, consent, quarantine, audit and FHIR."""
