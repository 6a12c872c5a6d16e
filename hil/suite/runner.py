"""Plays a scenario against a target: bench devices, the bench broker, the timeline
of steps and faults, the recording; then hands the events to the checker.

Each scenario gets a fresh broker (Mosquitto, mutual TLS 1.3, persistence on so a
`broker_down`/`broker_up` keeps the consumer's session), a fresh gateway with its
files in the scenario's folder (kept as evidence beside the report) and its own
devices. Steps with a duration (a cable pull, a kill -9 and restart) run beside the
timeline, so the next step keeps its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from appliance.core.model import parse_time
from hil.broker import Broker, Pki
from hil.suite.check import Event, Outcome, check, open_until
from hil.suite.consumer import Consumer
from hil.suite.families import SinkTail, make_device, radio_entry, stall, store_event, write_pairings
from hil.suite.faults import FAULTS, FaultPlayer, Rig, play_fault
from hil.suite.local_box import LocalRig
from hil.suite.spec import Scenario, Step
from hil.suite.target import LocalTarget, Sample, Target, TargetError, socket_dir

__all__ = ["ScenarioRun", "local_events", "run_on", "run_scenario"]

SAMPLE_EVERY_S: Final = 0.5
DRAIN_TIMEOUT_S: Final = 10.0  # after the devices stop: time for the store to reach the broker
MARK_GRACE_S: Final = 30.0  # a relative step's mark, once nothing else is left to play
TRIGGER_GRACE_S: Final = 5.0  # the first frame of a step played last (2 Hz devices: 0.5 s)
WINDOW_POLL_S: Final = 0.2  # a window still open past the duration: how often it is looked at
WINDOW_MAX_S: Final = 300.0  # and the longest a run goes on for such windows

Progress = Callable[[float], None]  # fraction of the scenario played


@dataclass(slots=True)
class ScenarioRun:
    scenario: Scenario
    workdir: Path
    start_t: float = 0.0
    end_t: float = 0.0
    events: list[Event] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    error: str = ""  # the run itself failed (no gateway, no broker): every expectation fails

    @property
    def ok(self) -> bool:
        return not self.error and all(o.ok for o in self.outcomes)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                out.append(obj)
    return out


def local_events(workdir: Path) -> list[Event]:
    """What the gateway wrote itself: alarm events (its local output, timed by the
    gateway) and observations (its sink, timed by their receive stamp)."""
    events = [
        Event(parse_time(a["time"]).timestamp(), "local", "alarm", a)
        for a in _lines(workdir / "alarms.jsonl")
        if a.get("type") == "alarm"
    ]
    events += [
        Event(parse_time(o["received"]).timestamp(), "local", "obs", o)
        for o in _lines(workdir / "records.jsonl")
        if o.get("type") == "observation"
    ]
    return events


class _Play:
    """One scenario's moving parts while it runs."""

    def __init__(
        self,
        scenario: Scenario,
        workdir: Path,
        broker: Broker,
        target: Target,
        *,
        wired: str = "",
        client: str = "hil",
        faults: FaultPlayer | None = None,
        wiring: dict[str, str] | None = None,
        radio: Path | None = None,
    ) -> None:
        """`faults`: what plays the box's faults; `wiring`: device id -> the serial port
        it writes to (a USB-serial adapter on the bench), else `wired`, else a pty."""
        self.scenario = scenario
        self.broker = broker
        self.target = target
        self.faults = faults
        self.consumer = Consumer(broker, client)
        self.events: list[Event] = []
        self.workdir = workdir
        wiring = wiring or {}
        self.devices = {
            d.id: make_device(d, workdir, self._triggered, wiring.get(d.id, wired), radio) for d in scenario.devices
        }
        self._actions: dict[str, str] = {}
        self.side: list[asyncio.Task[None]] = []
        self.marked: dict[str, float] = {}
        self.played: list[str] = []  # every step started, in order
        self.relative: list[asyncio.Task[None]] = []  # steps timed from another step's mark

    def _triggered(self, name: str, t: float) -> None:
        self.events.append(Event(t, "bench", "step", {"name": name, "action": self._actions[name], "trigger_t": t}))
        self.marked[name] = t

    async def when(self, name: str) -> float:
        """The time step `name` was marked (a milestone such as `ota/up`), once it is."""
        while name not in self.marked:
            await asyncio.sleep(0.1)
        return self.marked[name]

    async def _restart(self, down_s: float) -> None:
        await asyncio.sleep(down_s)
        await self.target.start()
        self.events.append(Event(time.time(), "bench", "restarted", {"starts": self.target.starts}))

    async def _broker_up(self) -> None:
        await asyncio.to_thread(self.broker.start)
        await self.consumer.start()

    def _mark(self, name: str, action: str, t: float) -> None:
        self._actions[name] = action
        self._triggered(name, t)

    async def play(self, step: Step, name: str) -> None:
        self._actions[name] = step.action
        self.played.append(name)
        if step.action in FAULTS and self.faults is not None:  # the suite was checked against its `plays`
            fault = play_fault(self.faults, step, name, self._mark)
            self.side.append(asyncio.create_task(fault))
            return
        dev = self.devices.get(step.device)
        if step.action in ("vitals", "clock_step") and dev is not None:
            dev.apply(Step(**{**{f: getattr(step, f) for f in step.__dataclass_fields__}, "name": name}))
            return  # the trigger is the first frame written with the new values
        now = time.time()
        if dev is not None and step.action == "cable_pull":
            self.side.append(asyncio.create_task(dev.cable_pull(step.down_s)))
        elif dev is not None and step.action == "device_reboot":
            self._actions[f"{name}/end"] = step.action  # the device marks it when it is back
            self.side.append(asyncio.create_task(dev.reboot(step.down_s, f"{name}/end")))
        elif dev is not None and step.action == "garbage":
            dev.garbage()
        elif dev is not None and step.action == "silence":
            dev.silence(step.down_s)
        elif step.action == "broker_down":
            await self.consumer.stop()
            await asyncio.to_thread(self.broker.stop)
        elif step.action == "broker_up":
            self.events.append(store_event(self.workdir))  # the queue's disk at the end of the outage
            await self._broker_up()
            now = time.time()
        elif step.action == "broker_stall":
            self.side.append(asyncio.create_task(stall(self.broker, step.down_s)))
        elif step.action == "kill_gateway":
            self.target.kill()
            self.side.append(asyncio.create_task(self._restart(step.down_s)))
        elif step.action in ("ack", "pause"):
            await self.target.control(
                {"cmd": step.action, "bed": step.bed, **({"rule": step.rule} if step.rule else {})}
            )
        elif step.action == "snapshot":
            reply = await self.target.control({"cmd": "list"})
            alarms = reply.get("alarms", []) if reply else []
            self.events.append(Event(time.time(), "control", "snapshot", {"name": name, "alarms": alarms}))
        self._triggered(name, now)


async def _sample(target: Target, out: list[Sample]) -> None:
    while True:
        if (s := target.sample()) is not None:
            out.append(s)
        await asyncio.sleep(SAMPLE_EVERY_S)


async def _relative(play: _Play, step: Step, name: str) -> None:
    """A step timed from another step's mark (an OTA's `ota/up`: the box back)."""
    at = await play.when(step.from_step) + step.at_s
    await asyncio.sleep(max(0.0, at - time.time()))
    await play.play(step, name)


async def _triggers_written(play: _Play) -> None:
    """A vitals step is marked by the first frame carrying it: the last step of a run
    (played by a relative step, after the timeline) still needs that frame written."""
    deadline = time.monotonic() + TRIGGER_GRACE_S
    while any(name not in play.marked for name in play.played) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def _last_marks(play: _Play, waiting: list[asyncio.Task[None]]) -> None:
    """Everything else is over: the marks the steps still waiting count from get
    `MARK_GRACE_S` to come (a device's first frame); once they are all there the steps
    play at their offsets; a mark that never comes fails the run, naming it."""
    deadline = time.monotonic() + MARK_GRACE_S
    while missing := sorted({s.from_step for s in play.scenario.steps if s.from_step} - set(play.marked)):
        if time.monotonic() > deadline:
            raise TargetError(f"steps timed from {', '.join(missing)} never played: the mark never came")
        await asyncio.sleep(0.1)
    await asyncio.gather(*waiting)


async def _timeline(play: _Play, run: ScenarioRun, progress: Progress) -> None:
    steps = sorted(enumerate(play.scenario.steps), key=lambda p: p[1].at_s)
    for i, step in steps:
        if step.from_step:
            play.relative.append(asyncio.create_task(_relative(play, step, step.name or f"#{i}")))
            play.side.append(play.relative[-1])
    for i, step in steps:
        if step.from_step:
            continue
        await asyncio.sleep(max(0.0, run.start_t + step.at_s - time.time()))
        await play.play(step, step.name or f"#{i}")
        progress(step.at_s / play.scenario.duration_s)
    while (left := run.start_t + play.scenario.duration_s - time.time()) > 0:
        progress(1 - left / play.scenario.duration_s)
        await asyncio.sleep(min(left, 0.5))
    progress(1.0)


async def _windows_closed(play: _Play, run: ScenarioRun) -> None:
    """Go on past the scenario's duration while a window anchored on a late mark is
    still open and unsettled (see `check.open_until`), for at most WINDOW_MAX_S; the
    run's events say how long."""
    start = time.time()
    while (left := open_until(play.scenario, [*play.events, *play.consumer.events], run.start_t) - time.time()) > 0:
        if time.time() - start >= WINDOW_MAX_S:
            break  # the windows still open are judged on what came (and fail if it did not)
        await asyncio.sleep(min(left, WINDOW_POLL_S, start + WINDOW_MAX_S - time.time()))
    if (waited := time.time() - start) >= WINDOW_POLL_S:
        play.events.append(Event(time.time(), "bench", "extended", {"by_s": round(waited, 1)}))


async def _drain(play: _Play, workdir: Path) -> None:
    """Wait until every observation the gateway recorded is at the broker (or give up)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    sink, before = SinkTail(workdir / "records.jsonl"), -1
    while time.monotonic() < deadline:
        local = await asyncio.to_thread(sink.read)
        if len(local) == before and local <= play.consumer.obs_ids:
            return  # all there, and nothing new recorded since the last look (bytes the
            # devices wrote before they stopped, an HL7 message in a socket buffer)
        before = len(local)
        await asyncio.sleep(0.2)


async def _play(play: _Play, run: ScenarioRun, progress: Progress) -> None:
    device_tasks = [asyncio.create_task(d.run()) for d in play.devices.values()]
    sampler = asyncio.create_task(_sample(play.target, run.samples))
    try:
        await play.target.start()
        run.start_t = time.time()
        await _timeline(play, run, progress)
        while pending := [t for t in play.side if not t.done()]:  # a side step may start another
            if all(t in play.relative for t in pending):
                await _last_marks(play, pending)
                break
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if (exc := task.exception()) is not None:
                    raise exc  # a fault that failed (an OTA the box refused): not a missing mark
        await asyncio.gather(*play.side)  # what finished on its own: its exception, if any
        await _triggers_written(play)
        await _windows_closed(play, run)
    finally:
        for task in play.relative:
            task.cancel()  # after a failure: steps still waiting for a mark that will not come
        for task in device_tasks:
            task.cancel()
        await asyncio.gather(*device_tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await _drain(play, run.workdir)
        sampler.cancel()
        await asyncio.gather(sampler, *play.side, return_exceptions=True)
        run.end_t = time.time()
        await play.target.stop()


async def run_scenario(
    scenario: Scenario,
    workdir: Path,
    pki: Pki,
    progress: Progress = lambda f: None,
    rig_for: Callable[[Scenario, Path], Rig] | None = None,
) -> ScenarioRun:
    """Play one scenario on a fresh gateway (`bedside run` here, or the box `rig_for`
    makes); the run with its events and outcomes."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "broker").mkdir(exist_ok=True)
    run = ScenarioRun(scenario, workdir)
    rig = (rig_for or LocalRig)(scenario, workdir)
    broker = Broker(workdir / "broker", pki, persistent=True, host=rig.broker_host, unbounded_queues=True)
    play: _Play | None = None
    sock = socket_dir() / "control.sock"
    try:
        await asyncio.to_thread(rig.open)
        await asyncio.to_thread(broker.start)
        radio = sock.parent / "radio.sock"  # BLE devices: the radio host's steering socket
        target = await asyncio.to_thread(rig.target, broker, sock)
        play = _Play(scenario, workdir, broker, target, faults=rig, wiring=rig.wiring, radio=radio)
        if isinstance(rig, LocalRig) and isinstance(target, LocalTarget):
            # Again, with the addresses the bench devices picked (an HL7 listener's port),
            # and the BLE radio host as the entry point when the bed has a BLE device.
            target.extra = tuple(radio_entry(scenario, radio))
            target.config.write_text(rig.config_for(broker, sock, play.devices))
            write_pairings(rig.data_dir / "registry.json", scenario.devices)
        await play.consumer.start()
        try:
            await _play(play, run, progress)
        finally:
            await play.consumer.stop()
    except (TargetError, RuntimeError, OSError) as exc:
        run.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(broker.stop)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(rig.close)
        shutil.rmtree(sock.parent, ignore_errors=True)
    recorded = [*play.events, *play.consumer.events] if play is not None else []
    recorded += [Event(s.t, "gateway", "sample", {"cpu_s": s.cpu_s, "rss_bytes": s.rss_bytes}) for s in run.samples]
    run.events = sorted([*recorded, *local_events(workdir)], key=lambda e: e.t)
    run.outcomes = check(scenario, run.events, run.start_t)
    return run


async def run_on(
    scenario: Scenario,
    workdir: Path,
    broker: Broker,
    target: Target,
    *,
    wired: str,
    progress: Progress = lambda f: None,
    faults: FaultPlayer | None = None,
) -> ScenarioRun:
    """Play one scenario on a gateway that is already up (the VM), its device wired to
    `wired`, with the suite's broker; `faults` plays the box's faults (a power cut)."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = ScenarioRun(scenario, workdir)
    play = _Play(scenario, workdir, broker, target, wired=wired, client=f"hil-{scenario.name}", faults=faults)
    try:
        await play.consumer.start()
        try:
            await _play(play, run, progress)
        finally:
            await play.consumer.stop()
    except (TargetError, RuntimeError, OSError) as exc:
        run.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    run.events = sorted([*play.events, *play.consumer.events], key=lambda e: e.t)
    run.outcomes = check(scenario, run.events, run.start_t)
    return run
