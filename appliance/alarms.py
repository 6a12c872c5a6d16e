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
from appliance.core.model import AlarmEvent, Observation, Record, TechnicalEvent, format_time
from rules.engine import Ack, Annunciation, Engine, EngineState, Event, Pause, Tick, utc
from rules.outputs import AlarmOutput, OutputChain, SelfTestResult
from rules.spec import RuleSet
from rules.states import AlarmState

__all__ = ["AlarmCircuit"]

log = logging.getLogger(__name__)
# Re-entrant events waiting for the current evaluation; more means a feedback loop.
MAX_REENTRANT: Final = 1000
# Observation ids whose device is remembered for alarm events (a few minutes of a bed).
MAX_REMEMBERED_OBS: Final = 4096
# Device alarm texts remembered (device, flag) -> the device's words; oldest first out.
MAX_DEVICE_TEXTS: Final = 1024
MAX_TEXT_CHARS: Final = 120


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
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()

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

    def describe(self, device_id: str, texts: Sequence[tuple[str, str]]) -> None:
        """The device's own words for its alarm flags (Reading.texts), remembered so the
        alarm it raises says what the device said, not a code."""
        for flag, text in texts:
            key = (device_id, flag)
            self._texts[key] = " ".join(text.split())[:MAX_TEXT_CHARS]
            self._texts.move_to_end(key)
        while len(self._texts) > MAX_DEVICE_TEXTS:
            self._texts.popitem(last=False)

    def message(self, key: str, default: str) -> str:
        """An alarm's text: the device's own for a device-reported alarm
        (`rule:flag@device`) when it sent one, else the rule's."""
        rule_flag, at, device = key.rpartition("@")
        _, colon, flag = rule_flag.partition(":")
        if at and colon:
            text = self._texts.get((device, flag))
            if text:
                return text
        return default

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

    def _device_of(self, obs_ids: Sequence[str]) -> str | None:
        """The device of the newest observation (of these ids) still remembered."""
        return next((self._obs_devices[i] for i in reversed(obs_ids) if i in self._obs_devices), None)

    def _attributed(self, action: AlarmEvent | Annunciation, cause: Event) -> AlarmEvent | Annunciation:
        if not isinstance(action, AlarmEvent):
            return action
        device = action.device_id or self._device_of(action.observation_ids)
        if device is None and isinstance(cause, TechnicalEvent) and action.kind == "technical":
            device = cause.device_id
        message = self.message(action.rule_id, action.message)
        return replace(action, device_id=device, patient_id=self._patients.get(action.bed_id), message=message)

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
                    "message": self.message(alarm.key, alarm.message),
                    "alarm_id": alarm.alarm_id,
                    "onset": format_time(utc(alarm.activated_at)) if alarm.activated_at else None,
                    "device_id": alarm.device_id or self._device_of(alarm.obs_ids),
                    "paused_s": max(0.0, alarm.paused_until - self._now())
                    if alarm.state is AlarmState.AUDIO_PAUSED
                    else None,
                }
            )
        return sorted(out, key=lambda a: (a["bed_id"], a["rule_id"]))
