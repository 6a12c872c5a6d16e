"""The census feed's listener: ADT over MLLP, TLS 1.3 with client certificates.

The device listener with its bounds, deadlines and eviction, asked of the driver
registry (`drivers.registry.census_listener`: the appliance never names a
protocol), speaking to `ClinicalPlane.on_adt`. Its connection refusals and
unreadable messages are technical events of the device `adt`; what the census
refuses is said by the plane (`census_refused`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from appliance.clinical.plane import ADT_DEVICE, ClinicalPlane
from appliance.clinical.settings import ClinicalSettings
from appliance.core.clock import Clock
from appliance.core.errors import BedsideConfigError
from appliance.core.model import DeviceEvent, Record
from appliance.core.tls import TlsPaths, resolve_tls
from drivers import registry
from drivers.address import parse_listen
from drivers.family import Link, LinkSetupError

__all__ = ["AdtFeedError", "adt_listener", "census_tasks"]


class AdtFeedError(BedsideConfigError):
    """The ADT listener cannot be set up (one line naming the key or file)."""


def adt_listener(
    settings: ClinicalSettings,
    plane: ClinicalPlane,
    emit: Callable[[DeviceEvent], None],
    clock: Clock,
    uplink: TlsPaths,
) -> Link:
    try:
        listen = parse_listen(settings.adt_listen)
    except ValueError as exc:
        raise AdtFeedError(f"clinical.adt_listen: {exc}") from None
    if listen is None:
        raise AdtFeedError(f"clinical.adt_listen: {settings.adt_listen!r} is not tcp://HOST:PORT or tls://HOST:PORT")
    tls = None
    if listen.tls:
        own = (settings.adt_tls_ca_path, settings.adt_tls_cert_path, settings.adt_tls_key_path)
        files = resolve_tls("clinical", own, uplink, prefix="adt_tls_", fallback=("ca",))
        for file in files.files:
            if not file.path:
                raise AdtFeedError(f"{file.key}: required for a tls:// ADT listener")
        tls = (files.ca.path, files.cert.path, files.key.path)
    try:
        return registry.census_listener(
            ADT_DEVICE, settings.adt_listen, tls=tls, on_event=plane.on_adt, emit=emit, clock=clock
        )
    except LinkSetupError as exc:  # the TLS material: the line names the file
        raise AdtFeedError(str(exc)) from None


def census_tasks(
    config: Any, plane: ClinicalPlane, publish: Callable[[Record], None], clock: Clock
) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
    """The supervised task of the configured census source: the ADT listener or the FHIR poll."""
    c = config.clinical
    if c.adt_listen:
        return {"adt": adt_listener(c, plane, publish, clock, config.uplink).run}
    if c.census_fhir_url:
        from appliance.clinical.census_poll import poller

        return {"census-poll": poller(config, plane, publish).run}
    return {}
