"""MQTT 5 uplink over mutual TLS: PKI, TLS policy, connect probe, client, tail."""

from appliance.uplink.tls import TlsFiles, UplinkTlsError, client_context, preflight

__all__ = ["TlsFiles", "UplinkTlsError", "client_context", "preflight"]
