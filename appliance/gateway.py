"""The gateway process: device links -> normalizer -> subscribers and sinks.

`handle()` is the hot path. It runs synchronously in the loop turn in which a
link decoded the bytes: stamp the receive time, normalize, hand the record to
the synchronous subscribers (the alarm path is one; it must never block), then
offer it to the sinks, which buffer and write from their own tasks. Nothing here
awaits disk or network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from appliance.alarms import AlarmCircuit
from appliance.arbiter import Arbiter, AuditRecord
from appliance.clinical.plane import ClinicalPlane
from appliance.config import Config, ConfigError, DeviceConfig
from appliance.control import ControlServer
from appliance.core.boot import new_boot_id
from appliance.core.clock import Clock, GatewayClock, MonotonicUTC
from appliance.core.model import DeviceEvent, Reading, Record, TechnicalEvent
from appliance.core.vocab import TechnicalKind
from appliance.looplag import LagMonitor
from appliance.normalize import DeviceContext, Normalizer
from appliance.outputs import build_outputs
from appliance.registry import Registry, file_writer
from appliance.sdnotify import Notifier
from appliance.sinks import JsonlSink, Sink
from appliance.stats import LatencyHistogram, RateWindow, StatsSettings, snapshot
from appliance.supervisor import Supervisor
from appliance.timesync import run_clock
from appliance.view import BedsideView, DeviceInfo, path_status
from drivers import registry
from drivers.family import Link, LinkEnv, LinkSetupError
from drivers.serial.link import Opener, open_serial
from rules.outputs import AlarmOutput
from rules.spec import DEFAULT_RULES_PATH, RuleSet, load_rules

# What only some configs use is imported where it is used (issue #15: start-up time
# and resident memory): the store and the uplink (cryptography, gmqtt) with [queue]
# and [uplink], a family's codec and transport stack (radio, listener, TLS) with a
# device of that family (drivers/registry.py), GPIO with [alarms] gpio_chip, the
# co-processor output (pyserial) with [alarms] coproc_port.
if TYPE_CHECKING:
    from appliance.clinical.audit_fhir import AuditFhirPlane
    from appliance.queue.queue import RecordQueue
    from appliance.uplink.client import Uplink

__all__ = ["Gateway", "build_outputs"]

log = logging.getLogger(__name__)


def _no_audit(kind: str, fields: Mapping[str, object]) -> None:
    """The audit hook while the clinical plane is off: nothing is recorded."""


class Gateway:
    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        opener: Opener = open_serial,
        notifier: Notifier | None = None,
        *,
        ruleset: RuleSet | None = None,
        outputs: list[AlarmOutput] | None = None,
        radio: Any = None,
    ) -> None:
        self.config = config
        self._radio = radio  # the system's radio backend unless a simulated one is given (made on first use)
        # `bedside run` passes the clock that follows the kernel's synchronised clock
        # (appliance.timesync.kernel_clock); a GatewayClock is polled by the "clock" task
        # and its stamps are flagged clock_unsynced until synchronised.
        self.clock: Clock = clock or MonotonicUTC()
        self._synced_clock = clock if isinstance(clock, GatewayClock) else None
        self.normalizer = Normalizer(max_clock_skew_s=config.gateway.max_clock_skew_s)
        self.registry = Registry(config.gateway.registry_path)
        self.registry.refresh()
        self.notifier = notifier or Notifier()
        self.subscribers: list[Callable[[Record], None]] = []
        self.sinks: list[Sink] = []
        if config.sink.jsonl_path:
            self.sinks.append(JsonlSink(config.sink.jsonl_path, config.sink.max_pending))
        self.boot_id = new_boot_id()  # this start's (appliance/core/boot.py): ids and envelopes
        self.queue: RecordQueue | None = self._make_queue()
        self.uplink: Uplink | None = self._make_uplink()
        self.counts: Counter[str] = Counter()
        self.ready = False  # set once every task runs and READY was told to systemd
        self.loop_lag = LagMonitor()
        self.self_test_ok: bool | None = None
        # Further supervised tasks (the OTA agent), added by the entry point before run().
        self.tasks: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        # Observation ids (appliance/normalize.py): the gateway's id keeps two gateways' apart.
        self._gateway_id = config.uplink.gateway_id or config.gateway.bed_id
        self.alarms = self._make_alarms(ruleset, outputs)
        self.audit_fhir: AuditFhirPlane | None = self._make_audit_fhir()  # audit trail, FHIR charting
        self.audit = self.audit_fhir.trail.record if self.audit_fhir is not None else _no_audit  # components' hook
        # Alarm path timing: a reading's arrival in handle() -> an annunciation it caused.
        self.stats_settings = StatsSettings()
        self.alarm_latency = LatencyHistogram()
        self.drain_rate = RateWindow(self.stats_settings.rate_window_s)
        self._reading_t0: float | None = None
        self.alarms.on_annunciate = self._annunciated
        if self.uplink is not None:  # after the alarm circuit: it keeps the per-bed alarm status
            self.subscribers.append(self.uplink.on_record)
        # The boot id keeps two starts of this gateway apart (for readings without an origin).
        self._devices = {dev.id: dev for dev in config.devices}
        self._contexts: dict[str, DeviceContext] = {}
        self.links: dict[str, Link] = {dev.id: self._link(dev, opener) for dev in config.devices}
        self._attach_clinical()
        # The operator's view (`bedside top`, the console, the demo): memory only, last subscriber.
        self.view = BedsideView([DeviceInfo(d.id, d.protocol, self.context(d).bed_id) for d in config.devices])
        self.view.gateway_id = self._gateway_id
        self.subscribers.append(self.view)

    def view_snapshot(self) -> dict[str, Any]:
        """What the operator sees now (appliance/view.py); a condition in its delay is no alarm yet."""
        alarms = [a for a in self.alarms.alarms() if a["state"] != "pending"]
        return self.view.snapshot(self.clock.now(), alarms, path_status(self.stats()))

    def _attach_clinical(self) -> None:
        """The census changes the device contexts; its source (ADT feed or FHIR poll) is a task;
        its decisions and the store's purges go to the audit trail; its consent gates the chart."""
        self.clinical = ClinicalPlane.load(self.config.clinical, self.registry, self.publish, self.clock)
        self.clinical.on_change = self._contexts.clear
        self.clinical.audit = self.audit
        if self.queue is not None:
            self.queue.audit = self.audit
        if self.audit_fhir is not None:
            self.audit_fhir.gate.consented = self.clinical.consented
        c = self.config.clinical
        if c.adt_listen or c.census_fhir_url:
            from appliance.clinical.feed import census_tasks

            self.tasks.update(census_tasks(self.config, self.clinical, self.publish, self.clock))

    def _make_queue(self) -> RecordQueue | None:
        q = self.config.queue
        if not q.path:
            return None
        from appliance.queue.queue import RecordQueue

        if self.config.clinical.census_path:  # a census: unpaired data has its own plane (issue 21)
            q = replace(q, quarantine_plane=True)
        queue = RecordQueue(q, self.publish)
        self.sinks.append(queue)
        return queue

    def _make_uplink(self) -> Uplink | None:
        up = self.config.uplink
        if not up.host or self.queue is None:
            return None
        from appliance.uplink.client import Uplink

        return Uplink(up, self.queue, self.publish, boot_id=self.boot_id)

    def _make_alarms(self, ruleset: RuleSet | None, outputs: list[AlarmOutput] | None) -> AlarmCircuit:
        alarms, arbiter = self.config.alarms, self.config.arbiter
        circuit = AlarmCircuit(
            ruleset or load_rules(alarms.rules_path or DEFAULT_RULES_PATH),
            build_outputs(alarms, self.publish) if outputs is None else outputs,
            self.publish,
            arbiter=Arbiter(dict(arbiter.precedence), arbiter.fresh_s, on_audit=self._audit),
            now=lambda: self.clock.now().timestamp(),
            tick_s=alarms.tick_s,
        )
        # The alarm circuit is the first subscriber: it sees every record before
        # anything else is done with it.
        self.subscribers.append(circuit.on_record)
        return circuit

    def _make_audit_fhir(self) -> AuditFhirPlane | None:
        if not self.config.audit.journal_path:
            return None
        from appliance.clinical.audit_fhir import for_gateway

        return for_gateway(self, self._gateway_id)

    def _link(self, dev: DeviceConfig, opener: Opener) -> Link:
        def emit(event: DeviceEvent) -> None:
            self.handle(dev, event)

        family = registry.family_for(dev.protocol)
        transport = registry.transport_for(family, dev.port)
        env = LinkEnv(
            emit=emit, clock=self.clock, opener=opener, radio=self.radio, cursor=self.registry,
            uplink_tls=self.config.uplink,
        )  # fmt: skip
        try:
            return transport.make_link(family, dev, env)
        except LinkSetupError as exc:  # one line naming the files; `bedside run` exits 2 with it
            raise ConfigError(f"devices {dev.id}: {exc}") from None

    def radio(self) -> Any:
        """The radio backend, made on first use (only a config with radio devices needs one)."""
        if self._radio is None:
            from drivers.registry import default_radio

            self._radio = default_radio()
        return self._radio

    def context(self, dev: DeviceConfig) -> DeviceContext:
        ctx = self._contexts.get(dev.id)
        if ctx is None:
            pairing = self.registry.get(dev.id)
            bed = pairing.bed_id if pairing else (dev.bed_id or self.config.gateway.bed_id)
            ctx = DeviceContext(
                device_id=dev.id,
                protocol=dev.protocol,
                bed_id=bed,
                tz=ZoneInfo(dev.timezone),
                patient_id=self.clinical.patient_for(bed, pairing.patient_id) if pairing else None,
                patient_aliases=self.clinical.aliases(bed),
                gateway_id=self._gateway_id,
                boot_id=self.boot_id,
            )
            self._contexts[dev.id] = ctx
        return ctx

    def handle(self, dev: DeviceConfig, event: DeviceEvent) -> None:
        t0 = time.perf_counter()
        received = self.clock.now()
        ctx = self.context(dev)
        if isinstance(event, Reading):
            self._reading_t0 = t0
            if event.texts:
                self.alarms.describe(event.device_id, event.texts)
            try:
                unsynced = self._synced_clock is not None and not self._synced_clock.synced
                obs, technical = self.normalizer.normalize(event, ctx, received, clock_unsynced=unsynced)
                for tech in technical:
                    self.publish(tech)
                if obs is not None:
                    self.publish(self.clinical.gate(obs))
            finally:
                self._reading_t0 = None
        else:
            self.publish(replace(event, time=event.time or received, bed_id=ctx.bed_id))

    def publish(self, record: Record) -> None:
        if isinstance(record, TechnicalEvent) and record.time is None:
            dev = self._devices.get(record.device_id)
            bed = self.context(dev).bed_id if dev else self.config.gateway.bed_id
            record = replace(record, time=self.clock.now(), bed_id=bed)
        if isinstance(record, TechnicalEvent):
            self.counts[record.kind] += 1
        else:
            self.counts[type(record).__name__.lower()] += 1
        for subscriber in self.subscribers:
            try:
                subscriber(record)
            except Exception:
                log.exception("subscriber %r failed", subscriber)
        for sink in self.sinks:
            sink.offer(record)

        if isinstance(record, TechnicalEvent) and record.kind != TechnicalKind.BAD_FRAME:
            log.info(
                "%s %s%s %s",
                record.device_id,
                record.kind,
                "" if record.active else " (ended)",
                record.detail,
            )

    def _annunciated(self, _annunciation: object) -> None:
        # Only annunciations a reading caused in this turn (not timer ticks, not commands).
        if self._reading_t0 is not None:
            self.alarm_latency.add(time.perf_counter() - self._reading_t0)

    def stats(self) -> dict[str, Any]:
        """The counters for `bedside stats` and the health topic (memory only)."""
        return snapshot(self, self.drain_rate)

    async def _health(self) -> None:
        # Samples the drain rate and publishes the counters as retained status/health.
        period = self.stats_settings.health_period_s
        while True:
            if self.uplink is not None:
                self.drain_rate.add(time.monotonic(), self.uplink.sent_rows)
                self.uplink.set_status("health", self.stats())
            await asyncio.sleep(period)

    def _audit(self, record: AuditRecord) -> None:
        for sink in self.sinks:
            sink.offer(record)
        if self.audit_fhir is not None:
            self.audit_fhir.on_arbiter(record)

    async def _watch_registry(self) -> None:
        while True:
            await asyncio.sleep(self.config.gateway.registry_poll_s)
            before = self.registry.snapshot()
            if await asyncio.to_thread(self.registry.refresh):
                self._contexts.clear()
                log.info("registry changed: pairings reloaded")
                if self.audit_fhir is not None:
                    writer = await asyncio.to_thread(file_writer, self.registry.path)
                    self.audit_fhir.pairings_changed(before, self.registry.snapshot(), writer)

    async def _watchdog(self) -> None:
        # Pinging from the event loop proves the loop (and so the alarm path) turns.
        assert self.notifier.watchdog_s is not None
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(self.notifier.watchdog_s / 2)

    def status_line(self) -> str:
        up = sum(1 for link in self.links.values() if link.connected)
        uplink = "offline" if self.uplink is None else ("up" if self.uplink.connected else "down")
        lag_ms = self.loop_lag.worst_s * 1000
        return (
            f"{up}/{len(self.links)} links connected, {self.counts['observation']} observations, uplink {uplink}, "
            f"worst loop lag {lag_ms:.0f} ms"
        )

    async def _status(self) -> None:
        while True:
            await asyncio.sleep(10)
            self.notifier.status(self.status_line())

    async def run(self, stop: asyncio.Event) -> bool:
        """Run until `stop` is set; returns True if shutdown finished in time."""
        supervisor = Supervisor(self.config.supervisor, self.publish)
        for i, sink in enumerate(self.sinks):
            supervisor.start(f"sink{i}", sink.run)
        for dev_id, link in self.links.items():
            supervisor.start(f"link:{dev_id}", link.run, dev_id)
        supervisor.start("registry", self._watch_registry)
        supervisor.start("clinical", self.clinical.run)
        if self.audit_fhir is not None:
            from appliance.clinical.audit import config_digest

            self.audit_fhir.start(config_digest(self.config), len(self.links), self.registry.snapshot())
            supervisor.start("audit-fhir", self.audit_fhir.run)
        if (synced_clock := self._synced_clock) is not None:
            supervisor.start("clock", lambda: run_clock(synced_clock, self.publish))
        if self.uplink is not None:
            supervisor.start("uplink", self.uplink.run)
        self.self_test_ok = all(r.ok for r in self.alarms.self_test())
        supervisor.start("alarms", self.alarms.run)
        for name, task in self.tasks.items():
            supervisor.start(name, task)
        if self.config.alarms.control_socket:
            from appliance.clinical.release import release

            control = ControlServer(
                self.alarms, self.config.alarms.control_socket, stats=self.stats, view=self.view_snapshot,
                audit=self.audit, handlers={"release": lambda req, uid: release(self.clinical, self.queue, req, uid)},
            )  # fmt: skip
            supervisor.start("control", control.run)
        supervisor.start("status", self._status)
        if self.uplink is not None:
            supervisor.start("health", self._health)
        supervisor.start("looplag", lambda: self.loop_lag.run(self.publish))
        if self.notifier.watchdog_s:
            supervisor.start("watchdog", self._watchdog)
        # READY does not wait for each task's first start: an unplugged device or a sender
        # that never connects is a normal state with its own technical alarm, and holding
        # READY back would have systemd kill the whole gateway (every bed's alarm path) for
        # one input. What can be checked beforehand is (config_checks: exit 2); a task that
        # still crashes raises the latching driver-crashed alarm on every restart.
        self.notifier.ready(f"running, {len(self.links)} device links")
        self.ready = True
        log.info("gateway running with %d device links", len(self.links))
        await stop.wait()
        log.info("shutting down")
        self.ready = False
        self.notifier.stopping()
        # Order: stop the inputs, then flush what they produced.
        clean = await supervisor.stop()
        for sink in self.sinks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.supervisor.shutdown_timeout_s / 2):
                    await sink.flush()
            sink.close()
        if self.audit_fhir is not None:  # bounded like the sinks: a stuck disk does not hold the stop
            await self.audit_fhir.flush(self.config.supervisor.shutdown_timeout_s / 2)
        log.info("stopped: %s", self.status_line())
        return clean
