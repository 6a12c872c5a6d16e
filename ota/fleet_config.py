"""The fleet's own settings, `FLEET/fleet.toml`: how long each role's metadata lives,
when `refresh` renews it and `status` warns, and which bundle format the image accepts.

Written with the defaults by `bedside ota keys`; an operator edits it. Read by the
same loader as the gateway's config (unknown keys, types, limits: one line, exit 2).
It holds no secret.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, NoReturn

from appliance.core.settings import build_settings, setting
from ota.errors import FleetError

__all__ = ["FLEET_FILE", "ROLES", "FleetSettings", "check_expiry_days", "load_fleet_settings", "write_fleet_settings"]

FLEET_FILE: Final = "fleet.toml"
ROLES: Final = ("root", "targets", "snapshot", "timestamp")


@dataclass(frozen=True, slots=True)
class FleetSettings:
    # How long a freshly signed role is valid. Short online roles limit how long a
    # stolen online key or a frozen mirror can fool a box; root is signed offline.
    root_expiry_days: float = setting(365.0, min=30.0, max=3650.0)
    targets_expiry_days: float = setting(90.0, min=7.0, max=730.0)
    snapshot_expiry_days: float = setting(7.0, min=1.0, max=90.0)
    timestamp_expiry_days: float = setting(1.0, min=0.04, max=30.0)
    # `status` warns when less than this is left; `refresh` renews targets (online key)
    # inside its window, snapshot and timestamp every time. Root needs the offline keys.
    root_warn_days: float = setting(60.0, min=1.0, max=3650.0)
    targets_warn_days: float = setting(30.0, min=1.0, max=730.0)
    snapshot_warn_days: float = setting(3.0, min=0.1, max=90.0)
    timestamp_warn_days: float = setting(0.5, min=0.01, max=30.0)
    # The image's RAUC accepts only verity bundles (image/files*/etc/rauc/system.conf:
    # bundle-formats=-plain); "any" is for fleets whose boxes still take plain ones.
    bundle_format: str = setting("verity", choices=("verity", "any"))

    def expiry_days(self, role: str) -> float:
        days: float = getattr(self, f"{role}_expiry_days")
        return days

    def warn_days(self, role: str) -> float:
        days: float = getattr(self, f"{role}_warn_days")
        return days


def check_expiry_days(role: str, days: float, option: str = "--expires-days") -> float:
    """A validity given on the command line, held to the limits fleet.toml allows for the
    role: a negative one signs metadata already expired, a huge one overflows the date."""
    limits = next(f.metadata for f in fields(FleetSettings) if f.name == f"{role}_expiry_days")
    if not (math.isfinite(days) and limits["min"] <= days <= limits["max"]):
        raise FleetError(
            f"{option} {days:g}: must be between {limits['min']:g} and {limits['max']:g} days "
            f"(the limits of fleet.toml {role}_expiry_days)"
        )
    return days


def _fail(key: str, message: str) -> NoReturn:
    raise FleetError(f"{key}: {message}")


def load_fleet_settings(fleet: Path) -> FleetSettings:
    """The fleet's settings; the defaults when the file is absent (repositories made
    before it existed)."""
    path = fleet / FLEET_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return FleetSettings()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FleetError(f"{path}: {exc}") from None
    settings: FleetSettings = build_settings(FleetSettings, raw, "", lambda k, m: _fail(f"{path}: {k}", m))
    for role in ROLES:
        if settings.warn_days(role) >= settings.expiry_days(role):
            _fail(f"{path}: {role}_warn_days", f"must be below {role}_expiry_days")
    return settings


def write_fleet_settings(fleet: Path, settings: FleetSettings = FleetSettings()) -> None:
    lines = ["# Fleet settings (bedside ota). Days may be fractions. See ota/fleet_config.py."]
    for fld in fields(settings):
        value = getattr(settings, fld.name)
        lines.append(f'{fld.name} = "{value}"' if isinstance(value, str) else f"{fld.name} = {float(value)}")
    (fleet / FLEET_FILE).write_text("\n".join(lines) + "\n")
