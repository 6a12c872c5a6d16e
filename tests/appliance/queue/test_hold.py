"""Invariant: every offered record is stored, held in memory, or counted as dropped;
alarm records are never dropped while the memory bound holds."""

import asyncio
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.model import AlarmEvent, TechnicalEvent
from appliance.core.vocab import AlarmEventState, Priority
from appliance.queue.hold import Held, HoldBuffer
from appliance.queue.queue import QueueSettings, RecordQueue
from tests.appliance.queue.test_records import observation

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def alarm(i: int) -> AlarmEvent:
    return AlarmEvent(f"a{i}", "spo2-low", "ICU-1", Priority.HIGH, "physiological", AlarmEventState.ACTIVE, T0)


def technical(i: int) -> TechnicalEvent:
    return TechnicalEvent("m1", "stale", detail=str(i), time=T0, bed_id="ICU-1")


class FlakyConnection(sqlite3.Connection):
    """The real SQLite connection, failing writes on demand like a full disk does."""

    failing = False

    def execute(self, sql, parameters=(), /):
        if self.failing and sql.startswith(("INSERT", "COMMIT", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, parameters)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("alarm"), st.integers(1, 3)),
        st.tuples(st.just("tech"), st.integers(1, 3)),
        st.tuples(st.just("obs"), st.integers(1, 90)),
        st.tuples(st.just("disk_ok"), st.booleans()),
        st.tuples(st.just("commit"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_every_record_is_stored_held_or_counted(steps):
    asyncio.run(_scenario(steps))


async def _scenario(steps):
    with tempfile.TemporaryDirectory() as d:
        reports: list[TechnicalEvent] = []
        q = RecordQueue(
            QueueSettings(str(Path(d) / "q.db"), str(Path(d) / "q.key"), commit_max_records=20, max_pending=50,
                          max_held_events=1000),
            reports.append,
            factory=FlakyConnection,
        )  # fmt: skip
        db = q.store._db
        assert isinstance(db, FlakyConnection)
        offered = {"alarm": 0, "technical": 0, "telemetry": 0}
        n = 0
        try:
            for op, arg in [*steps, ("disk_ok", True), ("commit", 0)]:
                if op == "alarm" or op == "tech":
                    for _ in range(arg):
                        n += 1
                        q.offer(alarm(n) if op == "alarm" else technical(n))
                        offered["alarm" if op == "alarm" else "technical"] += 1
                elif op == "obs":
                    for _ in range(arg):
                        n += 1
                        q.offer(observation(n))
                        offered["telemetry"] += 1
                elif op == "disk_ok":
                    db.failing = not arg
                else:
                    await q.flush()
                    ok = bool(q.last_commit_ok)
                    stored = q.store.stats().records
                    h, dropped = q.hold, q.hold.dropped
                    assert offered["alarm"] == stored.get("alarm", 0) + len(h.alarms)  # never dropped
                    assert dropped.alarm == 0
                    assert offered["technical"] == stored.get("technical", 0) + len(h.technical) + dropped.technical
                    assert offered["telemetry"] == stored.get("telemetry", 0) + len(h.telemetry) + dropped.telemetry
                    if ok:  # a whole pass written: nothing held, every drop in the store's count
                        assert len(h) == 0 and q.store.dropped == dropped.total
                    failing = [r.active for r in reports if r.kind == "store_failure"]
                    assert bool(failing and failing[-1]) == (not ok)
                    if dropped.total:
                        assert any(r.kind == "records_dropped" for r in reports)
        finally:
            q.close()


@given(st.lists(st.tuples(st.sampled_from("ATOgt"), st.integers(1, 30)), max_size=40))
def test_hold_buffer_accounts_for_everything(steps):
    hold = HoldBuffer(max_telemetry=25, max_events=40)
    added = taken_out = 0
    in_flight: list[list[Held]] = []
    alarms_added = 0
    for op, k in steps:
        if op in "ATO":
            for i in range(k):
                added += 1
                alarms_added += op == "A"
                hold.add(alarm(i) if op == "A" else technical(i) if op == "T" else observation(i))
        elif op == "g":
            batch = [a for a in [hold.take_alarm()] if a] + hold.take_technical() + hold.take_telemetry(k)
            in_flight.append(batch)
        elif in_flight:  # "t": the oldest in-flight batch either went to the store or comes back
            batch = in_flight.pop(0)
            if k % 2:
                taken_out += len(batch)
            else:
                hold.give_back(batch)
        assert added == len(hold) + sum(map(len, in_flight)) + taken_out + hold.dropped.total
        assert len(hold.telemetry) <= 25 and len(hold.alarms) + len(hold.technical) <= 40
        if alarms_added <= 40:
            assert hold.dropped.alarm == 0
