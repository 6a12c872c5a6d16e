"""HL7 v2 over MLLP (IHE PCD-01 ORU^R01, PCD-04 ORU^R40): framing, parsing, ACKs, TCP listener."""
