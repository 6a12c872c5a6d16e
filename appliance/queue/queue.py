"""The queue the gateway hands records to: a non-blocking sink over the store.

`offer()` runs on the hot path and only appends to bounded in-memory buffers.
One writer task moves them to the store through a single worker thread (which
owns the SQLite connection): each alarm in its own synchronous=FULL commit, as
soon as it arrives; telemetry group-committed (also FULL) every
`commit_interval_ms` or `commit_max_records`, whichever comes first, so one
fsync covers a whole batch. Nothing here is awaited by the
alarm path. The thread takes alarm commits before any waiting work
(`appliance.queue.worker`); WAL checkpoints run on their own thread
(`appliance.queue.checkpoint`); small telemetry rows older than
`compact_after_s` are merged while the uplink is not delivering.

Overflow policy of the in-memory buffers: see `appliance.queue.hold` (telemetry
dropped oldest-first and counted; alarm and technical records share a large
bound, technical going first). The same buffers hold what the store could not
write: a write that fails (disk full, I/O error) gives its batch back, raises
`store_failure` (ended when a whole pass writes again) and is retried with
backoff; every record dropped in memory is counted, reported as
`records_dropped` and added to the store's persistent drop count with the next
successful write. At shutdown whatever is still held is named in the log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from appliance.arbiter import AuditRecord
from appliance.core.model import AlarmEvent, Observation, Record, RecordFormatError, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from appliance.queue.checkpoint import Checkpointer
from appliance.queue.hold import Held, HoldBuffer
from appliance.queue.integrity import IntegrityCheck
from appliance.queue.merge import merge_groups, merge_payloads
from appliance.queue.planes import planes
from appliance.queue.records import decode_batch, encode_batch
from appliance.queue.seal import Sealer, load_or_create_key
from appliance.queue.store import RecordClass, Store, StoreStats, StoreWriteError
from appliance.queue.upkeep import Cursor, Group
from appliance.queue.worker import Priority, PriorityWorker
from appliance.sections import QueueSettings

__all__ = ["FILL_THRESHOLDS", "QueueSettings", "RecordQueue", "export", "merge_payloads"]

log = logging.getLogger(__name__)
FILL_THRESHOLDS: Final = (0.80, 0.95)
CHECKPOINT_AT_BYTES: Final = 4 * 1024 * 1024  # WAL size that starts a checkpoint (or 1/4 of its allowance)
# records_dropped is said at once, then at most this often while drops go on (a
# full disk drops telemetry every pass; one event per pass would flood the log).
DROPS_SAID_EVERY_S: Final = 60.0


# Kinds about the store itself are said, not stored: storing them would feed the loop they report.
_NOT_STORED: Final = frozenset({TechnicalKind.STORE_FILL, TechnicalKind.RECORDS_DROPPED})


class RecordQueue:
    def __init__(
        self,
        settings: QueueSettings,
        report: Callable[[TechnicalEvent], None],
        *,
        factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        self.settings = settings
        self._report = report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = PriorityWorker("bedside-store")
        # Set by the uplink while it hands rows out: compaction waits (it would
        # replace rows in flight, and they would be delivered twice).
        self.delivering = False
        self.hold = HoldBuffer(settings.max_pending, settings.max_held_events)
        self._wakeup = asyncio.Event()
        # Set when a write reached the disk: the idle uplink sends it at once instead of
        # finding it on its next poll (an alarm's way to the broker, not only its safety).
        self.stored = asyncio.Event()
        self._lock = asyncio.Lock()  # one writer pass at a time (run loop, flush command)
        self._fill_level = 0
        self._early: list[TechnicalEvent] = []
        self._persisted_drops = 0  # of hold.dropped.total, already added to the store's count
        self._reported_drops = 0
        self._drops_said_at: float | None = None
        self._failing_since: float | None = None
        self._in_flight = 0  # records in the worker thread's current write
        self.last_commit_ok: bool | None = None  # None until the first commit (health gate)
        existing = Path(settings.path).exists()
        key = load_or_create_key(settings.key_path, create=not existing)
        self.store = Store(settings.path, Sealer(key), settings.max_bytes, self._store_event, factory=factory)
        # Started by run(): from then on no commit of ours checkpoints (an alarm's least of all).
        self._checkpointer = Checkpointer(self.store.path, min(CHECKPOINT_AT_BYTES, self.store.wal_limit_bytes // 4))
        self.integrity = IntegrityCheck(self.store.path, self._store_event)  # after READY, see there
        # Purges of patient data are audited (issue 21); the gateway plugs its audit hook in.
        self.audit: Callable[[str, Mapping[str, object]], None] = lambda kind, fields: None

    @property
    def dropped_in_memory(self) -> int:
        return self.hold.dropped.total

    # -- hot path ----------------------------------------------------------------
    def offer(self, record: Record | AuditRecord) -> None:
        if isinstance(record, AlarmEvent):
            self.hold.add(record)
            self._wakeup.set()
        elif isinstance(record, Observation):
            self.hold.add(record)
            # While the store fails, telemetry does not hurry the retry (alarms do).
            if len(self.hold.telemetry) >= self.settings.commit_max_records and self._failing_since is None:
                self._wakeup.set()
        elif isinstance(record, TechnicalEvent) and record.kind not in _NOT_STORED:
            self.hold.add(record)

    # -- writer ------------------------------------------------------------------
    def _store_event(self, kind: str, detail: str) -> None:
        # Called in the worker thread: hop to the loop before reporting.
        event = TechnicalEvent("gateway", kind, detail=detail)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._report, event)
        else:
            self._early.append(event)  # during start-up: said once the gateway runs

    async def _in_thread(self, fn: Callable[..., object], *args: object, priority: Priority = Priority.BULK) -> object:
        return await asyncio.wrap_future(self._executor.submit(priority, functools.partial(fn, *args)))

    async def put_alarm(self, alarm: AlarmEvent) -> None:
        """Returns once the alarm is committed with synchronous=FULL (raises if it was not)."""
        payload = [(encode_batch([alarm]), 1)]
        await self._in_thread(self.store.put, RecordClass.ALARM, payload, True, priority=Priority.ALARM)

    async def _write(self, cls: RecordClass, batch: Sequence[Held]) -> None:
        if not batch:
            return
        dropped = self.hold.dropped.total - self._persisted_drops
        payload = encode_batch(batch)
        priority = Priority.ALARM if cls is RecordClass.ALARM else Priority.WRITE
        fut = asyncio.wrap_future(
            self._executor.submit(priority, functools.partial(self._put, cls, payload, len(batch), dropped))
        )
        # The thread finishes a write even if we are cancelled (shutdown): settle the
        # batch by what really happened, never by the cancellation.
        self._in_flight = len(batch)
        fut.add_done_callback(functools.partial(self._settle, batch, dropped))
        await asyncio.shield(fut)

    def _put(self, cls: RecordClass, payload: bytes, count: int, dropped: int) -> list[int]:
        # In the store thread: `delivering` is read when the write happens, so a row
        # the uplink may hand out is never grown (see `appliance.queue.grow`).
        return self.store.put(cls, [(payload, count)], True, dropped, grow=not self.delivering)

    def _settle(self, batch: Sequence[Held], dropped: int, fut: asyncio.Future[list[int]]) -> None:
        self._in_flight = 0
        if fut.cancelled() or fut.exception() is not None:
            self.hold.give_back(batch)
        else:
            self._persisted_drops += dropped
            self.stored.set()

    async def _commit_once(self) -> bool:
        """One pass over what is held; False when a write failed (the rest stays held)."""
        async with self._lock:
            hold = self.hold
            try:
                while (alarm := hold.take_alarm()) is not None:
                    await self._write(RecordClass.ALARM, [alarm])
                await self._write(RecordClass.TECHNICAL, hold.take_technical())
                while hold.telemetry:
                    taken = hold.take_telemetry(self.settings.commit_max_records)
                    for cls, part in planes(taken, self.settings.quarantine_plane):
                        await self._write(cls, part)
            except StoreWriteError as exc:
                self._failed(exc)
                return False
            finally:
                self._report_drops()
                self._check_fill()
            self._recovered()
            return True

    def _failed(self, exc: StoreWriteError) -> None:
        self.last_commit_ok = False
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("store write failed, holding %s records in memory: %s", self.hold.describe(), exc)
            self._report(
                TechnicalEvent("gateway", TechnicalKind.STORE_FAILURE, detail=f"{exc}; records held in memory")
            )

    def _recovered(self) -> None:
        self.last_commit_ok = True
        if self._failing_since is not None:
            outage = time.monotonic() - self._failing_since
            self._failing_since = None
            log.warning("store writes again after %.1f s", outage)
            self._report(
                TechnicalEvent(
                    "gateway", TechnicalKind.STORE_FAILURE, active=False, detail=f"writes again after {outage:.1f} s"
                )
            )

    def _report_drops(self) -> None:
        d = self.hold.dropped
        new = d.total - self._reported_drops
        now = time.monotonic()
        recent = self._drops_said_at is not None and now - self._drops_said_at < DROPS_SAID_EVERY_S
        if new > 0 and not (recent and self._failing_since is not None):
            self._drops_said_at = now
            self._reported_drops = d.total
            detail = (
                f"{new} records dropped in memory (store not writable or too slow); since start:"
                f" {d.telemetry} telemetry, {d.technical} technical, {d.alarm} alarm"
            )
            log.warning("%s", detail)
            self._report(TechnicalEvent("gateway", TechnicalKind.RECORDS_DROPPED, detail=detail))

    def _check_fill(self) -> None:
        fill = self.store.fill
        level = sum(1 for t in FILL_THRESHOLDS if fill >= t)
        if level != self._fill_level:
            rising = level > self._fill_level
            self._fill_level = level
            self._report(
                TechnicalEvent(
                    "gateway",
                    TechnicalKind.STORE_FILL,
                    active=level > 0,
                    detail=f"store {fill:.0%} full" + ("" if rising else " (falling)"),
                )
            )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self._checkpointer.started:
            await self._in_thread(self.store.automatic_checkpoints, False, priority=Priority.WRITE)
            self._checkpointer.start()
        if not self.integrity.started:
            self.integrity.start()
        for event in self._early:
            self._report(event)
        self._early.clear()
        interval = self.settings.commit_interval_ms / 1000
        wait = interval
        ttl_every = compact_every = 0.0
        while True:
            try:
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()
            if not await self._commit_once():
                # Retry a sick disk with backoff: a full disk does not heal in 100 ms.
                wait = min(wait * 2, self.settings.retry_max_ms / 1000)
                continue
            wait = interval
            ttl_every += interval
            compact_every += interval
            if self.settings.compact_after_s and compact_every >= 1.0:
                compact_every = 0.0
                await self.compact()
            if ttl_every >= self.settings.purge_every_s:
                ttl_every = 0.0
                await self._purge()

    async def _purge(self) -> None:
        """Telemetry past telemetry_ttl_s; quarantine (sent and held) past quarantine_ttl_s;
        withheld past withheld_ttl_s. Each purge of patient data is audited."""
        s = self.settings
        for cls, ttl_s, kind in (
            (RecordClass.TELEMETRY, s.telemetry_ttl_s, ""),
            (RecordClass.UNPAIRED, s.quarantine_ttl_s, "quarantine_expired"),
            (RecordClass.HELD, s.quarantine_ttl_s, "quarantine_expired"),
            (RecordClass.WITHHELD, s.withheld_ttl_s, "withheld_purged"),
        ):
            if not ttl_s:
                continue
            try:
                purged = await self._in_thread(self.store.purge_older_than, cls, ttl_s, priority=Priority.IDLE)
            except StoreWriteError as exc:
                log.warning("%s purge failed (tried again later): %s", cls.name.lower(), exc)
                continue
            if kind and purged:
                log.info("purged %s %s records older than %g s", purged, cls.name.lower(), ttl_s)
                self.audit(kind, {"class": cls.name.lower(), "records": purged, "older_than_s": ttl_s})

    async def compact(self) -> int:
        """One compaction pass while the uplink is not delivering; returns rows removed.
        Runs at the lowest priority; the merge (CBOR) runs off the store thread."""
        if self.delivering or self._checkpointer.behind():  # behind: skipped, not awaited (commits wait)
            return 0
        cutoff = int((time.time() - self.settings.compact_after_s) * 1000)
        plan = await self._in_thread(
            self.store.compact_plan, cutoff, self.settings.compact_rows_per_pass, priority=Priority.IDLE
        )
        assert isinstance(plan, list)
        if not plan:
            return 0
        merged, bad = await asyncio.to_thread(merge_groups, plan)
        for row_id, count, reason in bad:  # opens but does not decode: set aside, or it blocks every pass
            await self._in_thread(self.store.quarantine, row_id, RecordClass.TELEMETRY, count, reason)
        try:
            removed = await self._in_thread(self._replace_unless_delivering, merged, priority=Priority.IDLE)
        except StoreWriteError as exc:
            log.warning("compaction failed (tried again later): %s", exc)
            return 0
        assert isinstance(removed, int)
        return removed

    def _replace_unless_delivering(self, merged: list[tuple[Group, bytes]]) -> int:
        # Checked on the store thread: an uplink that started meanwhile reads after this.
        return 0 if self.delivering else self.store.compact_replace(merged)

    async def flush(self) -> None:
        """Write what is held now; what cannot be written stays held (never raises for it)."""
        await self._commit_once()

    async def outbox(
        self,
        limit: int,
        exclude: frozenset[int],
        classes: tuple[RecordClass, ...] = tuple(RecordClass),
        *,
        created_from_ms: int | None = None,
        created_before_ms: int | None = None,
        after: dict[RecordClass, Cursor] | None = None,
    ) -> list[tuple[int, RecordClass, int, bytes]]:
        result = await self._in_thread(
            functools.partial(
                self.store.outbox, created_from_ms=created_from_ms, created_before_ms=created_before_ms, after=after
            ),
            limit,
            exclude,
            classes,
        )
        assert isinstance(result, list)
        return result

    async def take_held(self, device_id: str, bed_id: str, since_ms: int) -> list[Observation]:
        """A device's held quarantine since `since_ms`, out of the store (appliance/queue/held.py)."""
        from appliance.queue.held import take_held

        taken = await self._in_thread(take_held, self.store, device_id, bed_id, since_ms, priority=Priority.WRITE)
        assert isinstance(taken, list)
        return taken

    async def delete(self, ids: list[int]) -> None:
        await self._checkpointer.settle()  # see checkpoint.py: pauses that let the WAL restart
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
        if len(self.hold):
            log.error(
                "store %s not writable at shutdown: %d records held in memory are not stored (%s)",
                self.settings.path, len(self.hold), self.hold.describe(),
            )  # fmt: skip
        if self._in_flight:
            log.error("store %s: a write of %d records was still under way at shutdown",
                      self.settings.path, self._in_flight)  # fmt: skip
        if self.hold.dropped.total:
            d = self.hold.dropped
            log.warning("records dropped in memory since start: %d telemetry, %d technical, %d alarm",
                        d.telemetry, d.technical, d.alarm)  # fmt: skip
        self._checkpointer.stop()  # before the store: its close is the last, and folds the WAL
        try:
            self._executor.submit(Priority.BULK, self.store.close).result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            log.error("store %s did not close within %.1f s; abandoning it", self.settings.path, timeout_s)
        except Exception as exc:  # a failing disk: committed rows are safe, say it and go on
            log.error("store %s close failed: %s", self.settings.path, exc)
        self._executor.shutdown()


def export(store: Store) -> Iterator[Record]:
    """Every stored record, alarms first (used by `bedside queue export`). A row that
    does not open or decode is skipped and quarantined (noted, on an inspection store)."""
    for row_id, cls, count, payload in store.iter_all():
        try:
            records = decode_batch(payload)
        except RecordFormatError as exc:
            store.quarantine(row_id, cls, count, str(exc))
            continue
        yield from records
