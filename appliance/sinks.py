"""Where records go after the alarm path has seen them.

`JsonlSink` appends JSON lines to a file: the sink until the durable queue lands,
and a debugging sink after. `offer()` never blocks and never touches the disk; a
writer task drains a bounded buffer and writes in a worker thread, so a slow SD
card cannot delay the event loop (and with it the alarm path). Overflow policy:
when `max_pending` records are waiting, the oldest is dropped and counted.

Writes are coalesced: after the first record of a batch the writer waits
`batch_delay_s` before handing the batch to its thread. One thread hop per read
of a serial port cost more main-thread CPU than decoding the line (issue #15:
the hop's lock handoff was the costliest item in the gateway's profile); a
debugging file a quarter second behind costs nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from pathlib import Path
from typing import Final, Protocol

from appliance.arbiter import AuditRecord
from appliance.core.model import Record, to_json_line

__all__ = ["MAX_PENDING", "JsonlSink", "MemorySink", "Sink"]

log = logging.getLogger(__name__)

# Upper bound on one write batch, so a big backlog is written in bounded pieces.
MAX_BATCH: Final = 1000
BATCH_DELAY_S: Final = 0.25
MAX_PENDING: Final = 10_000  # records waiting for the writer ([sink] max_pending)


class Sink(Protocol):
    def offer(self, record: Record | AuditRecord) -> None: ...

    async def run(self) -> None: ...

    async def flush(self) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """In-memory twin, also used by the demo's live view."""

    def __init__(self, max_records: int = 10_000) -> None:
        self.records: deque[Record | AuditRecord] = deque(maxlen=max_records)

    def offer(self, record: Record | AuditRecord) -> None:
        self.records.append(record)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class JsonlSink:
    def __init__(self, path: str | Path, max_pending: int = MAX_PENDING, batch_delay_s: float = BATCH_DELAY_S) -> None:
        self.path = Path(path)
        self._batch_delay_s = batch_delay_s
        # Records, not lines: encoding happens in the writer thread, so the loop
        # turn that carries the alarm path pays only an append.
        self._pending: deque[Record | AuditRecord] = deque()
        self._max_pending = max_pending
        self._wakeup = asyncio.Event()
        self.dropped = 0
        self.written = 0

    def offer(self, record: Record | AuditRecord) -> None:
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("jsonl sink %s full: %d records dropped so far", self.path, self.dropped)
        self._pending.append(record)
        if not self._wakeup.is_set():
            self._wakeup.set()

    @staticmethod
    def _line(record: Record | AuditRecord) -> str:
        if isinstance(record, AuditRecord):
            return json.dumps(record.to_json_dict(), separators=(",", ":"))
        return to_json_line(record)

    def _write(self, records: list[Record | AuditRecord]) -> None:
        lines = [self._line(r) for r in records]  # frozen records: safe to read from this thread
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    async def _drain(self) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            try:
                await asyncio.to_thread(self._write, batch)
            except OSError as exc:
                self.dropped += len(batch)
                log.error("jsonl sink %s: write failed, %d records lost: %s", self.path, len(batch), exc)
                return
            self.written += len(batch)

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(self._batch_delay_s)  # let the batch fill (module doc)
            self._wakeup.clear()
            await self._drain()

    async def flush(self) -> None:
        await self._drain()

    def close(self) -> None:
        return None
