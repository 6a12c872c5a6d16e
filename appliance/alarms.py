"""The alarm circuit: arbiter -> rule engine -> alarm outputs, in the caller's turn.

`on_record()` is a synchronous subscriber of the gateway's hot path: an
observation decoded in this loop turn reaches the engine and the outputs in the
same turn. Alarm events are then handed to `publish` (sinks, queue), which only
buffers: nothing here awaits disk or network. Re-entrant calls (an output
failure reported while outputs are being driven) are queued and evaluated right
after the current one, still in the same turn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

from appliance.arbiter import Arbiter
from appliance.core.model import AlarmEvent, Observation, Record, TechnicalEvent
from rules.engine import Ack, Annunciation, Engine, EngineState, Event, Pause, Tick
from rules.outputs import AlarmOutput, OutputChain, SelfTestResult
from rules.spec import RuleSet
from rules.states import AlarmState

__all__ = ["AlarmCircuit"]

log = logging.getLogger(__name__)
# Re-entrant events waiting for the current evaluation; more means a feedback loop.
MAX_REENTRANT: Final = 1000
# Observation ids whose device is remembered for alarm events (a few minutes of a bed).
MAX_REMEMBERED_OBS: Final = 4096


class AlarmCircuit:
    def __init__(
        self,
        ruleset: RuleSet,
        outputs: Sequence[AlarmOutput],
        publish: Callable[[Record], None],
        *,
        arbiter: Arbiter | None = None,
        now: Callable[[], float] = time.time,
        tick_s: float = 0.1,
    ) -> None:
        self.engine = Engine(ruleset)
        self.state = EngineState()
        self.arbiter = arbiter or Arbiter()
        self._publish = publish
        self._now = now
        self._tick_s = tick_s
        self.chain = OutputChain(outputs, publish)
        self._busy = False
        self._pending: deque[Event] = deque()
        self.reentrant_dropped = 0  # re-entrant events beyond MAX_REENTRANT (`bedside stats`)
        # Told after each annunciation reached the outputs (the gateway times its alarm path).
        self.on_annunciate: Callable[[Annunciation], None] | None = None
        # Who an alarm is about (AlarmEvent.device_id / patient_id): the bed's patient
        # as its latest observation says, and the devices of recent observation ids.
        self._patients: dict[str, str | None] = {}
        self._obs_devices: OrderedDict[str, str] = OrderedDict()

    # -- inputs ------------------------------------------------------------------
    def on_record(self, record: Record) -> None:
        if isinstance(record, Observation):
            self._patients[record.bed_id] = record.patient_id
            self._obs_devices[record.obs_id] = record.device_id
            if len(self._obs_devices) > MAX_REMEMBERED_OBS:
                self._obs_devices.popitem(last=False)
            if self.arbiter.select(record, self._now()):
                self.evaluate(record)
        elif isinstance(record, TechnicalEvent):
            self.evaluate(record)

    def command(self, cmd: Ack | Pause) -> None:
        self.evaluate(cmd)

    def evaluate(self, event: Event) -> None:
        if self._busy:
            if len(self._pending) < MAX_REENTRANT:
                self._pending.append(event)
            else:
                self.reentrant_dropped += 1
            return
        self._busy = True
        try:
            current: Event | None = event
            while current is not None:
                self.state, actions = self.engine.evaluate(self.state, current, self._now())
                self._dispatch([self._attributed(a, current) for a in actions])
                current = self._pending.popleft() if self._pending else None
        finally:
            self._busy = False

    def _attributed(self, action: AlarmEvent | Annunciation, cause: Event) -> AlarmEvent | Annunciation:
        if not isinstance(action, AlarmEvent):
            return action
        device = next((self._obs_devices[i] for i in reversed(action.observation_ids) if i in self._obs_devices), None)
        if device is None and isinstance(cause, TechnicalEvent) and action.kind == "technical":
            device = cause.device_id
        return replace(action, device_id=device, patient_id=self._patients.get(action.bed_id))

    def _dispatch(self, actions: Sequence[AlarmEvent | Annunciation]) -> None:
        # Outputs first: the box signals before anything is logged or queued.
        for action in actions:
            if isinstance(action, Annunciation):
                self.chain.annunciate(action)
                if self.on_annunciate is not None:
                    self.on_annunciate(action)
            else:
                self.chain.event(action)
        for action in actions:
            if isinstance(action, AlarmEvent):
                self._publish(action)

    # -- lifecycle ---------------------------------------------------------------
    def self_test(self) -> list[SelfTestResult]:
        results = self.chain.self_test()
        for r in results:
            log.log(logging.INFO if r.ok else logging.ERROR, "alarm output %s self-test: %s %s",
                    r.name, "ok" if r.ok else "FAILED", r.detail)  # fmt: skip
        return results

    async def run(self) -> None:
        """Timers and the outputs' own tasks (pattern player, file writer)."""
        tasks = []
        for output in self.chain.outputs:
            task = asyncio.create_task(output.run(), name=f"alarm-output:{output.name}")
            task.add_done_callback(functools.partial(self._output_ended, output))
            tasks.append(task)
        try:
            while True:
                await asyncio.sleep(self._tick_s)
                self.evaluate(Tick())
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _output_ended(self, output: AlarmOutput, task: asyncio.Task[None]) -> None:
        # An output's writer or pattern player that dies would otherwise fail silently
        # (nobody awaits it until shutdown): report it like any output failure.
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, Exception):
            self.chain.fail(output, exc)

    def alarms(self) -> list[dict[str, Any]]:
        """Alarms that are not inactive, for operators (`bedside alarm list`)."""
        out = []
        for alarm in self.state.alarms.values():
            if alarm.state is AlarmState.INACTIVE:
                continue
            out.append(
                {
                    "bed_id": alarm.bed_id,
                    "rule_id": alarm.key,
                    "state": alarm.state.value,
                    "priority": alarm.priority,
                    "message": alarm.rule.message or alarm.key,
                    "alarm_id": alarm.alarm_id,
                }
            )
        return sorted(out, key=lambda a: (a["bed_id"], a["rule_id"]))
