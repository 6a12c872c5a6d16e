"""What an accepted HL7 row means beyond its value: its term check and what it corrects.

- `term_flag(label)`: `unknown_code` / `code_name_mismatch` (drivers/hl7/terms.py
  `CarriedTerms.judge`, against every family's table).
- `Originals`: the identity of each numeric row a listener has used, so a
  correction (OBX-11 = C) can name the reading it replaces. A row's identity is
  the sender (MSH-3, MSH-4), OBX-3 code, OBX-4 containment and observation time
  (OBX-14, else inherited): a sender correcting a value resends exactly these.

Only digests are kept and the table is bounded (oldest first): a correction of a
row older than that, or of a row another gateway (or an earlier run) took,
carries `correction` without `corrects_origin:`. Pure; no I/O.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from datetime import datetime
from typing import Final

__all__ = ["CORRECTS_ORIGIN", "MAX_ORIGINALS", "Originals", "row_identity", "term_flag"]

MAX_ORIGINALS: Final = 4096  # rows remembered per listener (a few minutes of a busy monitor)
# `corrects_origin:<origin>`: the corrected reading's `origin`; the normalizer turns
# it into `corrects:<obs_id>` of that reading (appliance/identity.py).
CORRECTS_ORIGIN: Final = "corrects_origin:"


def row_identity(sender: str, code: int, place: tuple[int, ...], time: datetime | None) -> bytes:
    stamp = time.isoformat() if time is not None else ""
    text = f"{sender}\x00{code}\x00{'.'.join(map(str, place))}\x00{stamp}"
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class Originals:
    """Row identity -> the `origin` of the latest reading with that identity (bounded)."""

    def __init__(self, max_entries: int = MAX_ORIGINALS) -> None:
        self._rows: OrderedDict[bytes, str] = OrderedDict()
        self._max = max_entries
        self.matched = 0  # corrections whose original was found
        self.unmatched = 0

    def link(self, identity: bytes, origin: str, correction: bool) -> str | None:
        """Remember this row; for a correction, return the origin of the row it corrects.

        The correction then stands for that identity: a second correction names the
        first (each corrects the value standing when it was sent)."""
        corrected = self._rows.get(identity) if correction else None
        if correction:
            if corrected is None:
                self.unmatched += 1
            else:
                self.matched += 1
        self._rows[identity] = origin
        self._rows.move_to_end(identity)
        if len(self._rows) > self._max:
            self._rows.popitem(last=False)
        return corrected


def term_flag(label: str) -> str | None:
    from drivers.registry import carried_terms  # lazily: the registry imports this family

    return carried_terms().judge(label)
