"""Mutual TLS 1.3 against a real Mosquitto: accepted, and every refusal named."""

import datetime as dt
import ssl

import pytest

from appliance.uplink.probe import connect_packet, probe
from appliance.uplink.tls import TlsFiles, UplinkTlsError, client_context, preflight

pytestmark = pytest.mark.integration


async def test_good_client_is_accepted(broker, pki):
    files = pki.client("gw-1")
    assert preflight(files).subject.rfc4514_string() == "CN=gw-1"
    result = await probe("127.0.0.1", broker.port, client_context(files), "localhost", "gw-1")
    assert result.ok, result.reason


async def test_no_client_certificate_is_refused(broker, pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(pki.ca)
    result = await probe("127.0.0.1", broker.port, ctx, "localhost", "gw-1", timeout_s=3)
    assert not result.ok and ("refused" in result.reason or "closed" in result.reason), result.reason


async def test_certificate_from_another_ca_is_refused(broker, pki):
    files = TlsFiles(pki.ca, str(pki.dir / "rogue.pem"), str(pki.dir / "rogue.key"))
    with pytest.raises(UplinkTlsError, match="not issued by the pinned CA"):
        preflight(files)
    # Even if someone skipped the preflight, the broker refuses it.
    result = await probe("127.0.0.1", broker.port, client_context(files), "localhost", "gw-1", timeout_s=3)
    assert not result.ok, result.reason


async def test_expired_certificate_is_refused_by_preflight_and_broker(broker, pki):
    files = TlsFiles(pki.ca, str(pki.dir / "expired.pem"), str(pki.dir / "expired.key"))
    with pytest.raises(UplinkTlsError, match="expired on"):
        preflight(files)
    result = await probe("127.0.0.1", broker.port, client_context(files), "localhost", "gw-old", timeout_s=3)
    assert not result.ok, result.reason


async def test_tls12_client_is_refused(broker, pki):
    files = pki.client("gw-1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(pki.ca)
    ctx.load_cert_chain(files.cert, files.key)
    result = await probe("127.0.0.1", broker.port, ctx, "localhost", "gw-1", timeout_s=3)
    assert not result.ok and "TLS refused" in result.reason, result.reason


async def test_wrong_host_name_is_refused_by_the_client(broker, pki):
    result = await probe("127.0.0.1", broker.port, client_context(pki.client("gw-1")), "evil.example", "gw-1")
    assert not result.ok and "not trusted" in result.reason, result.reason


def test_key_readable_by_others_and_missing_files(pki, tmp_path):
    import os
    import shutil

    key = tmp_path / "k.key"
    shutil.copy(pki.client("gw-1").key, key)
    os.chmod(key, 0o644)
    with pytest.raises(UplinkTlsError, match="readable by others"):
        preflight(TlsFiles(pki.ca, pki.client("gw-1").cert, str(key)))
    with pytest.raises(UplinkTlsError, match="client certificate missing"):
        preflight(TlsFiles(pki.ca, str(tmp_path / "none.pem"), str(key)))
    with pytest.raises(UplinkTlsError, match="not valid before"):
        preflight(pki.client("gw-1"), now=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def test_connect_packet_is_mqtt5():
    pkt = connect_packet("gw-1")
    assert pkt[0] == 0x10 and pkt[2:8] == b"\x00\x04MQTT" and pkt[8] == 5 and pkt.endswith(b"\x00\x04gw-1")
