"""The alarm output interface. Calls are synchronous and must return quickly:
they run on the alarm path, in the loop turn that decoded the triggering bytes."""

from __future__ import annotations

from typing import Protocol

from appliance.core.errors import BedsideRulesError
from appliance.core.model import AlarmEvent
from rules.engine import Annunciation

__all__ = ["AlarmOutput", "OutputError"]


class OutputError(BedsideRulesError):
    """An alarm output cannot signal (hardware missing, line busy, write failed)."""


class AlarmOutput(Protocol):
    name: str

    def annunciate(self, annunciation: Annunciation) -> None: ...

    def event(self, event: AlarmEvent) -> None: ...

    def self_test(self) -> None:
        """Exercise the output briefly; raise OutputError if it cannot work."""
        ...

    async def run(self) -> None:
        """Background work (pattern player, file writer); may return at once."""
        ...

    def close(self) -> None: ...
