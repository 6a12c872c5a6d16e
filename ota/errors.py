"""One exception tree for the OTA subsystem."""

from __future__ import annotations

from appliance.core.errors import BedsideInputError, BedsideOtaError

__all__ = ["FleetError", "InstallError", "OtaError", "RefusedUpdate"]


class OtaError(BedsideOtaError):
    """Base of every OTA error."""


class FleetError(OtaError, BedsideInputError):
    """Fleet-side (keys, publishing) problem: a one-line message for the operator."""


class RefusedUpdate(OtaError):
    """An update was refused; nothing was installed. `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InstallError(OtaError):
    """RAUC failed or refused to install (the slot it wrote is not activated)."""
