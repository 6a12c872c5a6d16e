"""Settings fields that carry their own limits, read by the config loader.

A component's settings dataclass declares each default once, with its limits in
the field's metadata (`choices`, `min`, `max`, `min_len`, `max_len`, and `only`:
why the key is refused on a device it does not apply to). The loader
(appliance/config.py) checks a file against them, so a limit is written once too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["setting"]


def setting(default: Any = dataclasses.MISSING, **limits: Any) -> Any:
    return dataclasses.field(default=default, metadata=limits)
