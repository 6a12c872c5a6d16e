"""Fan-out to every alarm output, with failover and a start-up self-test."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.core.model import AlarmEvent, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from rules.engine import Annunciation
from rules.outputs.base import AlarmOutput

__all__ = ["OutputChain", "SelfTestResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SelfTestResult:
    name: str
    ok: bool
    detail: str = ""


class OutputChain:
    def __init__(self, outputs: Sequence[AlarmOutput], report: Callable[[TechnicalEvent], None]) -> None:
        self.outputs = list(outputs)
        self.failed: dict[str, str] = {}
        self._report = report
        self._last: Annunciation | None = None

    @property
    def working(self) -> list[AlarmOutput]:
        return [o for o in self.outputs if o.name not in self.failed]

    def _fail(self, output: AlarmOutput, exc: Exception) -> None:
        self.failed[output.name] = str(exc)
        log.error("alarm output %s failed: %s; the others carry on", output.name, exc)
        self._report(TechnicalEvent("gateway", TechnicalKind.OUTPUT_FAILURE, detail=f"{output.name}: {exc}"))

    def fail(self, output: AlarmOutput, exc: Exception) -> None:
        """Report an output that failed outside a call (its background task died)."""
        if output.name not in self.failed:
            self._fail(output, exc)

    def annunciate(self, annunciation: Annunciation) -> None:
        self._last = annunciation
        for output in self.working:
            try:
                output.annunciate(annunciation)
            except Exception as exc:
                self._fail(output, exc)

    def event(self, event: AlarmEvent) -> None:
        for output in self.working:
            try:
                output.event(event)
            except Exception as exc:
                self._fail(output, exc)

    def self_test(self) -> list[SelfTestResult]:
        results = []
        for output in self.outputs:
            try:
                output.self_test()
                results.append(SelfTestResult(output.name, True))
            except Exception as exc:
                results.append(SelfTestResult(output.name, False, str(exc)))
                self._fail(output, exc)
        return results
