"""The queue the gateway hands records to: a non-blocking sink over the store.

`offer()` runs on the hot path and only appends to bounded in-memory buffers.
One writer task moves them to the store through a single worker thread (which
owns the SQLite connection): each alarm in its own synchronous=FULL commit, as
soon as it arrives; telemetry group-committed (also FULL) every
`commit_interval_ms` or `commit_max_records`, whichever comes first, so one
fsync covers a whole batch. Nothing here is awaited by the
alarm path.

Overflow policy of the in-memory buffers (the store is slower than the devices
for longer than the buffer lasts): the oldest telemetry is dropped and counted;
alarms are never dropped here (their buffer is unbounded but alarms are rare and
each is written at once).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from appliance.arbiter import AuditRecord
from appliance.model import AlarmEvent, Observation, Record, TechnicalEvent
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.seal import Sealer, load_or_create_key
from appliance.queue.store import RecordClass, Store, StoreStats

__all__ = ["FILL_THRESHOLDS", "QueueSettings", "RecordQueue", "export"]

log = logging.getLogger(__name__)
FILL_THRESHOLDS: Final = (0.80, 0.95)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    path: str
    key_path: str
    max_bytes: int = 512 * 1024 * 1024
    commit_interval_ms: int = 100
    commit_max_records: int = 2000
    telemetry_ttl_s: float = 0.0  # 0 = keep until delivered or dropped for space
    max_pending: int = 100_000


class RecordQueue:
    def __init__(self, settings: QueueSettings, report: Callable[[TechnicalEvent], None]) -> None:
        self.settings = settings
        self._report = report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bedside-store")
        self._alarms: deque[AlarmEvent] = deque()
        self._technical: deque[TechnicalEvent] = deque(maxlen=settings.max_pending)
        self._telemetry: deque[Observation] = deque(maxlen=settings.max_pending)
        self._wakeup = asyncio.Event()
        self.dropped_in_memory = 0
        self._fill_level = 0
        self._early: list[TechnicalEvent] = []
        self.last_commit_ok: bool | None = None  # None until the first commit (health gate)
        existing = Path(settings.path).exists()
        key = load_or_create_key(settings.key_path, create=not existing)
        self.store = Store(settings.path, Sealer(key), settings.max_bytes, self._store_event)

    # -- hot path ----------------------------------------------------------------
    def offer(self, record: Record | AuditRecord) -> None:
        if isinstance(record, AlarmEvent):
            self._alarms.append(record)
            self._wakeup.set()
        elif isinstance(record, Observation):
            if len(self._telemetry) == self._telemetry.maxlen:
                self.dropped_in_memory += 1
            self._telemetry.append(record)
            if len(self._telemetry) >= self.settings.commit_max_records:
                self._wakeup.set()
        elif isinstance(record, TechnicalEvent) and record.kind not in ("store_fill", "records_dropped"):
            self._technical.append(record)

    # -- writer ------------------------------------------------------------------
    def _store_event(self, kind: str, detail: str) -> None:
        # Called in the worker thread: hop to the loop before reporting.
        event = TechnicalEvent("gateway", "records_dropped" if kind == "records_dropped" else kind, detail=detail)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._report, event)
        else:
            self._early.append(event)  # during start-up: said once the gateway runs

    async def _in_thread(self, fn: Callable[..., object], *args: object) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _put(self, cls: RecordClass, records: list[Record], durable: bool) -> None:
        payload = encode_batch(records)
        await self._in_thread(self.store.put, cls, [(payload, len(records))], durable)

    async def put_alarm(self, alarm: AlarmEvent) -> None:
        """Returns once the alarm is committed with synchronous=FULL."""
        await self._put(RecordClass.ALARM, [alarm], durable=True)

    async def _commit_once(self) -> None:
        while self._alarms:
            await self.put_alarm(self._alarms.popleft())
        if self._technical:
            batch: list[Record] = [self._technical.popleft() for _ in range(len(self._technical))]
            await self._put(RecordClass.TECHNICAL, batch, durable=True)
        while self._telemetry:
            n = min(len(self._telemetry), self.settings.commit_max_records)
            obs: list[Record] = [self._telemetry.popleft() for _ in range(n)]
            await self._put(RecordClass.TELEMETRY, obs, durable=True)
        self._check_fill()

    def _check_fill(self) -> None:
        fill = self.store.payload_bytes / self.settings.max_bytes
        level = sum(1 for t in FILL_THRESHOLDS if fill >= t)
        if level != self._fill_level:
            rising = level > self._fill_level
            self._fill_level = level
            self._report(
                TechnicalEvent(
                    "gateway",
                    "store_fill",
                    active=level > 0,
                    detail=f"store {fill:.0%} full" + ("" if rising else " (falling)"),
                )
            )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        for event in self._early:
            self._report(event)
        self._early.clear()
        interval = self.settings.commit_interval_ms / 1000
        ttl_every = 0.0
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self._commit_once()
            except Exception:
                self.last_commit_ok = False
                raise
            self.last_commit_ok = True
            ttl_every += interval
            if self.settings.telemetry_ttl_s and ttl_every >= 60:
                ttl_every = 0.0
                await self._in_thread(self.store.purge_older_than, RecordClass.TELEMETRY, self.settings.telemetry_ttl_s)

    async def flush(self) -> None:
        await self._commit_once()

    async def outbox(
        self,
        limit: int,
        exclude: frozenset[int],
        classes: tuple[RecordClass, ...] = tuple(RecordClass),
        created_from_ms: int | None = None,
        created_before_ms: int | None = None,
    ) -> list[tuple[int, RecordClass, int, bytes]]:
        result = await self._in_thread(self.store.outbox, limit, exclude, classes, created_from_ms, created_before_ms)
        assert isinstance(result, list)
        return result

    async def delete(self, ids: list[int]) -> None:
        await self._in_thread(self.store.delete, ids)

    async def checkpoint(self) -> None:
        await self._in_thread(self.store.checkpoint)

    async def stats(self) -> StoreStats:
        result = await self._in_thread(self.store.stats)
        assert isinstance(result, StoreStats)
        return result

    def close(self, timeout_s: float = 2.0) -> None:
        """Close the store; a store stuck on a dead disk is abandoned after the timeout
        (what was committed is safe; SQLite recovers the WAL on the next open)."""
        try:
            self._executor.submit(self.store.close).result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            log.error("store %s did not close within %.1f s; abandoning it", self.settings.path, timeout_s)
        self._executor.shutdown(wait=False)


def export(store: Store) -> Iterator[Record]:
    """Every stored record, alarms first (used by `bedside queue export`)."""
    for _row_id, _cls, payload in store.iter_all():
        yield from decode_batch(payload)
