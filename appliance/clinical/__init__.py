"""The clinical plane: audit trail, FHIR R4 resources, charting to the clinical topic."""
