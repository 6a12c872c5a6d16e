"""The gmqtt adapter against the installed gmqtt: every private part it relies on is
still there with the same shape, and the PUBACK hook still sees reason codes.

If this fails after a gmqtt upgrade, the uplink would publish but never learn of a
PUBACK (rows never deleted) or miss a refusal: fix gmqtt_adapter.py before the pin."""

import asyncio
import importlib
import inspect
from importlib.metadata import version

import gmqtt
import pytest

from appliance.uplink.gmqtt_adapter import INTERNALS, AckClient, ConnectError, close_client, receive_maximum


def _objects(client):
    """What each INTERNALS entry names: instances where gmqtt sets the attribute in __init__."""
    return {
        "gmqtt.client.Client": client,
        "gmqtt.mqtt.handler.MqttPackageHandler": client._package_handler,
        "gmqtt.storage.PersistentStorage": client._persistent_storage,
        "gmqtt.mqtt.connection.MQTTConnection": gmqtt.mqtt.connection.MQTTConnection,
        "gmqtt.mqtt.handler": importlib.import_module("gmqtt.mqtt.handler"),
    }


def test_the_installed_gmqtt_is_the_pinned_series():
    assert version("gmqtt").startswith("0.8."), "gmqtt_adapter.py was written against gmqtt 0.8: re-check it"


@pytest.mark.parametrize(("where", "name", "params"), INTERNALS, ids=[f"{w}.{n}" for w, n, _ in INTERNALS])
def test_every_private_part_the_adapter_uses_exists_with_its_shape(where, name, params):
    client = gmqtt.Client("adapter-check")
    owner = _objects(client)[where]
    if not inspect.ismodule(owner) and not inspect.isclass(owner):
        kind = type(owner)
        assert f"{kind.__module__}.{kind.__qualname__}" == where, f"gmqtt moved {where}"
    assert hasattr(owner, name), f"gmqtt {version('gmqtt')} has no {where}.{name}"
    if params is not None:
        parameters = [p for p in inspect.signature(getattr(owner, name)).parameters if p != "self"]
        assert tuple(parameters) == params, f"{where}.{name} now takes {parameters}"


def test_packet_handlers_are_still_looked_up_by_attribute_name():
    # The hook is an instance attribute named like gmqtt's handler: this is how gmqtt finds it.
    source = inspect.getsource(gmqtt.mqtt.handler.MqttPackageHandler)
    assert '"_handle_{}_packet".format' in source
    assert AckClient("adapter-check")._package_handler._handler_cache == {}, "handlers cached before the hook"


async def test_a_puback_through_gmqtts_dispatch_resolves_with_its_reason_code():
    client = AckClient("adapter-check")
    handler = client._package_handler
    loop = asyncio.get_running_loop()
    refused, ok, bare = loop.create_future(), loop.create_future(), loop.create_future()
    client.acks.update({1: refused, 2: ok, 3: bare})
    handler._handle_packet(0x40, b"\x00\x01\x87")  # PUBACK mid 1, Not authorized
    handler._handle_packet(0x40, b"\x00\x02\x10")  # mid 2, No matching subscribers
    handler._handle_packet(0x40, b"\x00\x03")  # mid 3, no reason code: success
    assert (refused.result(), ok.result(), bare.result()) == (0x87, 0x10, 0x00)
    assert client.acks == {}


async def test_fail_all_and_close_release_everything():
    client = AckClient("adapter-check")
    fut = asyncio.get_running_loop().create_future()
    client.acks[7] = fut
    client.fail_all(ConnectionError("gone"))
    assert isinstance(fut.exception(), ConnectionError) and client.acks == {}
    await close_client(client)  # never connected: nothing to close, nothing raised


def test_receive_maximum_reads_the_connack_property():
    client = AckClient("adapter-check")
    assert receive_maximum(client) == 65535  # the broker sent none
    client._package_handler._connack_properties = {"receive_maximum": [20]}
    assert receive_maximum(client) == 20
    assert issubclass(ConnectError, Exception)
