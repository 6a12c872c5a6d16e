"""The line families' simulators (their DeviceFamily.simulator hooks) and their demo devices.

Each function here is a hook: it returns the family's `LineSim`, which knows the
family's stream (a device that sends on its own, or a monitor answering polls),
its defaults and refusals for `bedside hil simulate`, and the devices it puts in
`bedside demo`.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from hil.bench import DemoDevice, DemoEnv, SimUsageError
from hil.broker import free_port
from hil.scenarios import vitals_at
from hil.simulate import LineSim, SimConfig, run_monitor, run_periodic

__all__ = ["datex", "hl7", "intellivue", "masimo", "medibus", "nonin"]


class _Masimo(LineSim):
    demo = (
        DemoDevice("masimo-1", "masimo", "ICU-1", SimConfig("masimo", "", "desaturation", "radical7", time_scale=3)),
        DemoDevice(
            "masimo-2",
            "masimo",
            "ICU-3",
            SimConfig("masimo", "", "sensor-off", "rad8", garbage_every_s=7, cable_pull_every_s=25, cable_down_s=3),
        ),
    )

    def prepare(self, cfg: SimConfig) -> SimConfig:
        return replace(cfg, baud=9600)

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        from hil.masimo_sim import masimo_line

        def line(t: float, n: int) -> bytes:
            return masimo_line(cfg.variant, cfg.wall_clock(), vitals_at(cfg.scenario, t))

        return run_periodic(cfg, line, duration_s)


class _Nonin(LineSim):
    demo = (
        DemoDevice("nonin-1", "nonin-2", "ICU-2", SimConfig("nonin", "", "tachycardia", data_format=2, time_scale=3)),
    )

    def prepare(self, cfg: SimConfig) -> SimConfig:
        return replace(cfg, baud=9600)

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        from hil.nonin_sim import nonin_packet

        # Formats 2 and 7 send 25 frames per packet at 75 frames/s.
        period = 1 / 3 if cfg.data_format in (2, 7) and cfg.rate_hz <= 0 else cfg.period_s()
        return run_periodic(
            cfg,
            lambda t, n: nonin_packet(cfg.data_format, vitals_at(cfg.scenario, t), pleth_phase=n),
            duration_s,
            period,
        )


class _IntelliVue(LineSim):
    # A Philips monitor: association, MDS create, polls at 115200 8N1.
    demo = (
        DemoDevice(
            "intellivue-1",
            "intellivue",
            "ICU-4",
            SimConfig("intellivue", "", "desaturation", baud=115200, time_scale=3),
        ),
    )
    replays = True

    def prepare(self, cfg: SimConfig) -> SimConfig:
        return replace(cfg, baud=115200)

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        from hil.intellivue_sim import MonitorSim

        monitor = MonitorSim(cfg.vitals, cfg.wall_clock)
        if cfg.replay:
            monitor.replay(cfg.replay)
        return run_monitor(cfg, monitor, duration_s)


class _Datex(LineSim):
    # A GE S/5: displayed values every 5 s at 19200 8E1 with RTS/CTS.
    demo = (DemoDevice("s5-1", "datex", "ICU-5", SimConfig("datex", "", "tachycardia", baud=19200, time_scale=3)),)

    def prepare(self, cfg: SimConfig) -> SimConfig:
        return replace(cfg, baud=19200)

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        from hil.datex_sim import S5Sim

        return run_monitor(cfg, S5Sim(cfg.vitals, cfg.wall_clock), duration_s)


class _Medibus(LineSim):
    # A Dräger Evita 4 on MEDIBUS (19200 8E1), with realtime bytes mixed into the slow protocol.
    demo = (
        DemoDevice(
            "evita-1",
            "medibus-evita4",
            "ICU-6",
            SimConfig("medibus", "", "desaturation", "evita4", baud=19200),
        ),
    )

    def prepare(self, cfg: SimConfig) -> SimConfig:
        from drivers.medibus.codec import PROFILES
        from hil.medibus_sim import MODELS

        # The command line's default model is another family's: pick a Dräger one.
        variant = "evita4" if cfg.variant in ("", "radical7") else cfg.variant
        if variant not in MODELS:
            *most, last = MODELS
            raise SimUsageError(f"--variant: MEDIBUS model must be {', '.join(most)} or {last}, not {variant!r}")
        return replace(cfg, variant=variant, baud=PROFILES.get(variant, (19200, "E"))[0])

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        from hil.medibus_sim import MODELS, DraegerSim

        if cfg.variant not in MODELS:
            raise ValueError(f"unknown MEDIBUS model {cfg.variant!r}; known: {', '.join(MODELS)}")
        return run_monitor(cfg, DraegerSim(cfg.variant, cfg.vitals, cfg.wall_clock, realtime=True), duration_s)


class _Hl7(LineSim):
    # An HL7 sender (PCD-01 vitals, PCD-04 alerts) connecting to the gateway's MLLP listener.
    demo = (DemoDevice("hl7-1", "hl7", "ICU-7", SimConfig("hl7", "", "desaturation", time_scale=3)),)

    def prepare(self, cfg: SimConfig) -> SimConfig:
        return replace(cfg, baud=9600)

    def port(self, device: DemoDevice, env: DemoEnv) -> str:
        return f"tcp://127.0.0.1:{free_port()}"  # the gateway listens, the sender connects

    def stream(self, cfg: SimConfig, duration_s: float | None) -> Coroutine[Any, Any, None]:
        from hil.hl7_sim import Hl7SenderSim

        if cfg.port.startswith("tcp://"):
            return _hl7_tcp(cfg, duration_s)
        return run_monitor(cfg, Hl7SenderSim(cfg.vitals, cfg.wall_clock, period_s=cfg.period_s() * 5), duration_s)


async def _hl7_tcp(cfg: SimConfig, duration_s: float | None) -> None:
    """An HL7 sender that connects to a gateway's tcp:// listener."""
    from datetime import datetime
    from urllib.parse import urlsplit

    from hil.hl7_sim import Hl7SenderSim, run_tcp

    where = urlsplit(cfg.port)
    if where.hostname is None or where.port is None:
        raise ValueError(f"{cfg.port!r}: expected tcp://HOST:PORT")
    sim = Hl7SenderSim(cfg.vitals, datetime.now, period_s=cfg.period_s() * 5)
    await run_tcp(sim, where.hostname, where.port, duration_s=duration_s)


def masimo() -> LineSim:
    return _Masimo()


def nonin() -> LineSim:
    return _Nonin()


def intellivue() -> LineSim:
    return _IntelliVue()


def datex() -> LineSim:
    return _Datex()


def medibus() -> LineSim:
    return _Medibus()


def hl7() -> LineSim:
    return _Hl7()
