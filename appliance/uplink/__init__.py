"""MQTT 5 uplink over mutual TLS (in progress: PKI, TLS policy, connect probe)."""

from appliance.uplink.tls import TlsFiles, UplinkTlsError, client_context, preflight

__all__ = ["TlsFiles", "UplinkTlsError", "client_context", "preflight"]
