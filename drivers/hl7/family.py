"""The HL7 v2 family's descriptor and its transport, the MLLP listener (drivers/family.py).

HL7 runs on a listener (port tcp:// or tls://) or on a serial port (MLLP over
RS-232, or unframed messages when the port is configured so).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from appliance.core.settings import setting
from appliance.core.terms import Term
from appliance.core.tls import ResolvedTls, TlsPaths, resolve_tls
from drivers.address import parse_listen
from drivers.devices import DeviceSettings, device_keys
from drivers.family import CodecSettings, DeviceFamily, DeviceTime, LinkEnv, LinkSetupError
from drivers.serial.line import SerialLine

if TYPE_CHECKING:
    from appliance.core.clock import Clock
    from drivers.codec import Codec
    from drivers.hl7.listener import Hl7Listener

__all__ = ["FAMILY", "Hl7SerialOptions", "ListenerDevice", "MllpListener"]


@dataclass(frozen=True, slots=True)
class Hl7SerialOptions:
    # A sender on a serial port that does not use MLLP framing (no ACKs then).
    hl7_unframed: bool = setting(
        False, only="only for an hl7 device on a serial port (MLLP framing is required on TCP)"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerDevice(DeviceSettings):
    # A tls:// listener's certificate and key, and the CA its senders' certificates
    # must come from (empty: the uplink's, see tls()).
    tls_cert_path: str = setting("")
    tls_key_path: str = setting("")
    tls_ca_path: str = setting("")
    # File keeping the digests of the last messages taken, so a sender's resend after
    # a gateway restart is used once (drivers/hl7/seen_file.py); empty = memory only.
    seen_path: str = setting("", written=True)  # checked at start-up as a file we write

    def tls(self, where: str, uplink: TlsPaths) -> ResolvedTls | None:
        """A tls:// listener's files: its own; the CA may be left to the uplink's."""
        listen = parse_listen(self.port)
        if listen is None or not listen.tls:
            return None
        own = (self.tls_ca_path, self.tls_cert_path, self.tls_key_path)
        return resolve_tls(where, own, uplink, prefix="tls_", fallback=("ca",))


@dataclass(frozen=True, slots=True)
class MllpListener:
    """Port tcp://HOST:PORT, or tls://HOST:PORT = TLS 1.3 with client certificates."""

    kind: str = "listener"
    device: type[ListenerDevice] = ListenerDevice
    refusal: str = "tcp:// and tls:// listeners are for protocol hl7 only"

    @property
    def keys(self) -> frozenset[str]:
        return device_keys(self.device)

    def claims(self, port: str) -> bool:
        return "://" in port

    def port_problem(self, port: str) -> str:
        try:
            parse_listen(port)
        except ValueError as exc:
            return str(exc)
        return ""

    def takes_any(self, port: str) -> bool:
        return False  # a listener: senders connect to it (with certificates under tls://)

    def port_identity(self, port: str) -> str:
        return port

    def device_problem(self, protocol: str, dev: ListenerDevice, uplink: TlsPaths) -> tuple[str, str] | None:
        tls = dev.tls("", uplink)
        if tls is None:
            return None
        if not tls.cert.path or not tls.key.path:
            return "tls_cert_path", "a tls:// listener needs tls_cert_path and tls_key_path"
        if not tls.ca.path:
            return "tls_ca_path", "a tls:// listener needs tls_ca_path (or uplink.ca_path)"
        return None

    def make_link(self, family: DeviceFamily, dev: ListenerDevice, env: LinkEnv) -> Hl7Listener:
        from drivers.hl7.listener import Hl7Listener, ListenerTlsError, server_context

        listen = parse_listen(dev.port)
        assert listen is not None  # claims() said so
        ctx = None
        tls = dev.tls("", env.uplink_tls)
        if tls is not None:
            try:
                ctx = server_context(tls.ca.path, tls.cert.path, tls.key.path)
            except ListenerTlsError as exc:  # the key's own line names the file
                raise LinkSetupError(str(exc)) from None
            # ValueError: the key/certificate checks - all fail closed as one line naming the files.
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise LinkSetupError(
                    f"cannot load listener TLS material ({tls.cert.path}, {tls.ca.path}): {exc}"
                ) from None
        return Hl7Listener(dev.id, listen, env.emit, ctx, seen_path=dev.seen_path, clock=env.clock)


def _codec(protocol: str, device_id: str, clock: Clock, settings: CodecSettings) -> Codec:
    from drivers.hl7.codec import Hl7Codec

    # A capture file holds bare or MLLP-framed messages; a port is framed unless configured not to be.
    unframed = settings.capture or bool(settings.options.get("hl7_unframed", False))
    return Hl7Codec(device_id, clock, unframed=unframed)  # ACK timestamps (MSH-7) come from this clock


def _terms(label: str) -> Term | None:
    from drivers.registry import carried_terms

    return carried_terms()(label)


def _table() -> Mapping[str, Term]:
    return {}


FAMILY: Final = DeviceFamily(
    name="hl7",
    protocols=("hl7",),
    codec=_codec,
    transports=(MllpListener(), SerialLine()),
    terms=_terms,
    table=_table,
    # OBX-11 "X": results cannot be obtained (hl7-mllp.md §6 checklist). An OBX-3 we
    # cannot tie to one term (unknown code, code and name disagree) is kept for the
    # record but invalid: only invalid values are kept out of the alarm engine.
    invalid_flags=frozenset(
        {
            "result_status_x",
            "sensor_calibrating",
            "invalid_measurement",
            "unavailable",
            "demo_data",
            "unknown_code",
            "code_name_mismatch",
        }
    ),
    questionable_flags=frozenset({"questionable_measurement"}),
    options={"serial": Hl7SerialOptions},
    simulator="hil.line_sims:hl7",
    summary="HL7 v2 ORU^R01 / ORU^R40 over MLLP",
    # OBX-14 with an explicit offset says when: a resent or batched result keeps it.
    device_time={"hl7": DeviceTime.STATED},
)
