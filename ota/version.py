"""Release versions: dotted integers, compared numerically (1.10.0 > 1.9.3)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["parse_version"]

_VERSION: Final = re.compile(r"^\d+(\.\d+){0,3}$")


def parse_version(text: str) -> tuple[int, ...]:
    if not _VERSION.match(text):
        raise ValueError(f"{text!r} is not a release version (dotted integers, e.g. 1.4.2)")
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (4 - len(parts))
