"""The canonical term a device label maps to: IEEE 11073-10101 MDC code and UCUM unit.

Each device family owns its label table (drivers/<family>/terms.py); this is the
record type they share, so the normalizer and the tables agree on one shape.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Term"]


@dataclass(frozen=True, slots=True)
class Term:
    metric: str  # MDC reference id
    code: int  # numeric MDC code, partition * 65536 + term code
    unit: str  # UCUM; empty when the message carries its own unit
    source: str  # where the mapping comes from
