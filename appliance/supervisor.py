"""Runs one task per device link (and the gateway's own tasks) and keeps them alive.

A task that raises is logged, reported as a `driver_crashed` technical event and
restarted after an exponential backoff; a task that ran `stable_after_s` without
crashing starts again from the shortest delay. Nothing a driver does can take the
process down. `stop()` cancels everything and waits at most the shutdown timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from appliance.config import SupervisorConfig
from appliance.core.backoff import Backoff
from appliance.core.model import TechnicalEvent
from appliance.core.vocab import TechnicalKind

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    def __init__(self, config: SupervisorConfig, report: Callable[[TechnicalEvent], None]) -> None:
        self._config = config
        self._report = report
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}

    def start(self, name: str, factory: TaskFactory, device_id: str = "gateway") -> None:
        if name in self._tasks:
            raise ValueError(f"task {name!r} already supervised")
        self.restarts[name] = 0
        self._tasks[name] = asyncio.create_task(self._guard(name, factory, device_id), name=name)

    async def _guard(self, name: str, factory: TaskFactory, device_id: str) -> None:
        backoff = Backoff(self._config.restart_min_s, self._config.restart_max_s)
        while True:
            started = time.monotonic()
            try:
                await factory()
                detail = "task returned unexpectedly"
                log.error("%s: %s", name, detail)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                log.exception("%s crashed", name)
            if time.monotonic() - started >= self._config.stable_after_s:
                backoff.reset()
            delay = backoff.next()
            self.restarts[name] += 1
            self._report(
                TechnicalEvent(
                    device_id,
                    TechnicalKind.DRIVER_CRASHED,
                    count=self.restarts[name],
                    detail=f"{name}: {detail}; restart in {delay:.2f} s",
                )
            )
            await asyncio.sleep(delay)

    async def stop(self) -> bool:
        """Cancel all tasks; True when all ended within the shutdown timeout."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=self._config.shutdown_timeout_s)
        for task in pending:
            log.error("task %s did not stop within %.1f s", task.get_name(), self._config.shutdown_timeout_s)
        self._tasks.clear()
        return not pending
