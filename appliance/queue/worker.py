"""The store's one thread, with priorities: an alarm commit never queues behind bulk work.

SQLite allows one writer, and the store's connection belongs to one thread.
With a plain FIFO executor an alarm commit waited for every uplink read,
delete and compaction submitted before it (6-901 ms during a drain, issue #15).
Here each job has a priority; the thread always takes the most urgent job
waiting, so an alarm waits at most for the one job already running. Bulk jobs
are kept short for that reason (bounded outbox reads, deletes, compactions).

Bound and overflow: the number of waiting jobs is bounded by the callers (one
writer pass, one uplink, one compaction at a time each await their job), so
the queue has no bound of its own and never drops a job.
"""

from __future__ import annotations

import concurrent.futures
import enum
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Priority", "PriorityWorker"]


class Priority(enum.IntEnum):
    ALARM = 0  # a durable alarm commit
    WRITE = 1  # group commits of technical events and telemetry
    BULK = 2  # uplink reads and deletes, stats, checkpoints
    IDLE = 3  # compaction, purges: only when nothing else waits


_Job = tuple[int, int, "Callable[[], Any] | None", "concurrent.futures.Future[Any] | None"]


class PriorityWorker:
    def __init__(self, name: str) -> None:
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()  # FIFO within a priority
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, priority: Priority, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._closed:
            fut.set_exception(RuntimeError("store worker is shut down"))
            return fut
        self._jobs.put((int(priority), next(self._seq), fn, fut))
        return fut

    def _run(self) -> None:
        while True:
            _, _, fn, fut = self._jobs.get()
            if fn is None or fut is None:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting caller, never lost
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    def shutdown(self) -> None:
        """Run what is already queued, then stop (after every priority: the last place)."""
        if not self._closed:
            self._closed = True
            self._jobs.put((len(Priority), next(self._seq), None, None))
