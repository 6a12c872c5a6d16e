"""The census feed's listener: HL7 ADT over MLLP, TLS 1.3 with client certificates.

The device listener (drivers/hl7/listener.py) with its bounds, deadlines and
eviction, speaking ADT (`drivers.hl7.adt.AdtCodec`) to `ClinicalPlane.on_adt`.
Its connection refusals and unreadable messages are technical events of the
device `adt`; what the census refuses is said by the plane (`census_refused`).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable

from appliance.clinical.plane import ADT_DEVICE, ClinicalPlane
from appliance.clinical.settings import ClinicalSettings
from appliance.core.clock import Clock
from appliance.core.errors import BedsideConfigError
from appliance.core.model import DeviceEvent
from appliance.core.tls import TlsPaths, resolve_tls
from drivers.address import parse_listen
from drivers.hl7.adt import AdtCodec
from drivers.hl7.listener import Hl7Listener, ListenerTlsError, server_context

__all__ = ["AdtFeedError", "adt_listener"]


class AdtFeedError(BedsideConfigError):
    """The ADT listener cannot be set up (one line naming the key or file)."""


def adt_listener(
    settings: ClinicalSettings,
    plane: ClinicalPlane,
    emit: Callable[[DeviceEvent], None],
    clock: Clock,
    uplink: TlsPaths,
) -> Hl7Listener:
    try:
        listen = parse_listen(settings.adt_listen)
    except ValueError as exc:
        raise AdtFeedError(f"clinical.adt_listen: {exc}") from None
    if listen is None:
        raise AdtFeedError(f"clinical.adt_listen: {settings.adt_listen!r} is not tcp://HOST:PORT or tls://HOST:PORT")
    ctx = None
    if listen.tls:
        own = (settings.adt_tls_ca_path, settings.adt_tls_cert_path, settings.adt_tls_key_path)
        tls = resolve_tls("clinical", own, uplink, prefix="adt_tls_", fallback=("ca",))
        for file in tls.files:
            if not file.path:
                raise AdtFeedError(f"{file.key}: required for a tls:// ADT listener")
        try:
            ctx = server_context(tls.ca.path, tls.cert.path, tls.key.path)
        except ListenerTlsError as exc:
            raise AdtFeedError(str(exc)) from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise AdtFeedError(
                f"cannot load ADT listener TLS material ({tls.cert.path}, {tls.ca.path}): {exc}"
            ) from None
    codec = functools.partial(AdtCodec, on_adt=plane.on_adt)
    return Hl7Listener(ADT_DEVICE, listen, emit, ctx, clock=clock, codec=codec)
