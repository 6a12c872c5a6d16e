"""Console (journald under systemd), JSON-lines and in-memory alarm outputs."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Final

from appliance.core.model import AlarmEvent, to_json_dict
from appliance.core.vocab import AlarmEventState, Priority
from rules.engine import Annunciation
from rules.outputs.base import OutputError

__all__ = ["ConsoleOutput", "JsonlAlarmOutput", "MemoryOutput"]

alarm_log = logging.getLogger("bedside.alarm")
# Bounded: a stuck disk drops the oldest lines (counted), never blocks the alarm path.
MAX_PENDING_LINES: Final = 10_000


class ConsoleOutput:
    name = "console"

    def annunciate(self, annunciation: Annunciation) -> None:
        alarm_log.warning(
            "annunciation: audible=%s visual=%s active=%d",
            annunciation.audible or "off",
            annunciation.visual or "off",
            annunciation.active_count,
        )

    def event(self, event: AlarmEvent) -> None:
        level = (
            logging.ERROR
            if event.priority == Priority.HIGH and event.state == AlarmEventState.ACTIVE
            else logging.WARNING
        )
        # The event's own time (the gateway clock, which the records carry) beside the log
        # line's (the system clock): the two differ while the box is not synchronised.
        alarm_log.log(
            level,
            "%s %s %s [%s] %s at %s",
            event.bed_id,
            event.priority,
            event.state,
            event.rule_id,
            event.message,
            event.time.isoformat(timespec="seconds"),
        )

    def self_test(self) -> None:
        alarm_log.info("console alarm output self-test")

    async def run(self) -> None:
        return None

    def close(self) -> None:
        return None


class JsonlAlarmOutput:
    """Alarm events and annunciations as JSON lines, written off the alarm path."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_LINES)
        self._wakeup = asyncio.Event()
        self.dropped = 0

    def _offer(self, obj: dict[str, object]) -> None:
        if len(self._pending) == MAX_PENDING_LINES:
            self.dropped += 1
        self._pending.append(json.dumps(obj, separators=(",", ":")))
        self._wakeup.set()

    def annunciate(self, annunciation: Annunciation) -> None:
        self._offer(
            {
                "type": "annunciation",
                "audible": annunciation.audible,
                "visual": annunciation.visual,
                "active_count": annunciation.active_count,
            }
        )

    def event(self, event: AlarmEvent) -> None:
        self._offer(to_json_dict(event))

    def self_test(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise OutputError(f"{self.path}: {exc.strerror}") from exc

    def _write(self, lines: list[str]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    async def flush(self) -> None:
        while self._pending:
            lines = [self._pending.popleft() for _ in range(len(self._pending))]
            await asyncio.to_thread(self._write, lines)

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    def close(self) -> None:
        return None


class MemoryOutput:
    """In-memory twin for tests and the latency bench: records calls with perf_counter stamps."""

    def __init__(self, name: str = "memory", fail: bool = False, detail: str = "simulated failure") -> None:
        self.name = name
        self.fail = fail
        self.detail = detail
        self.annunciations: list[tuple[float, Annunciation]] = []
        self.events: list[tuple[float, AlarmEvent]] = []

    def annunciate(self, annunciation: Annunciation) -> None:
        if self.fail:
            raise OutputError(f"{self.name}: {self.detail}")
        self.annunciations.append((time.perf_counter(), annunciation))

    def event(self, event: AlarmEvent) -> None:
        if self.fail:
            raise OutputError(f"{self.name}: {self.detail}")
        self.events.append((time.perf_counter(), event))

    def self_test(self) -> None:
        if self.fail:
            raise OutputError(f"{self.name}: {self.detail}")

    async def run(self) -> None:
        return None

    def close(self) -> None:
        return None
