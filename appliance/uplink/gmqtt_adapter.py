"""Everything the uplink does to gmqtt below its public API, in one place.

gmqtt 0.8 parses a PUBACK's packet id but drops its MQTT 5 reason code (its handler
says "TODO: parse reason code"), and `Client.publish` returns no handle to wait on.
The uplink deletes a row only after a *successful* PUBACK, so it needs both. The
hook below replaces the client's PUBACK handler on the instance and publishes
through the connection directly. These are private parts of gmqtt: the version is
pinned (pyproject.toml) and `INTERNALS` lists every one of them, so the adapter's
test (tests/appliance/uplink/test_gmqtt_adapter.py) fails loudly on an upgrade that
moves or reshapes any of them, instead of the uplink silently never deleting rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Mapping
from typing import Any, Final

import gmqtt

__all__ = ["INTERNALS", "AckClient", "ConnectError", "close_client", "receive_maximum"]

# (where, attribute, parameters after self or None for a plain attribute): what this
# module touches. The test checks each against the installed gmqtt.
INTERNALS: Final = (
    ("gmqtt.client.Client", "_package_handler", None),
    ("gmqtt.client.Client", "_connection", None),
    ("gmqtt.client.Client", "_persistent_storage", None),
    ("gmqtt.mqtt.handler.MqttPackageHandler", "_handle_puback_packet", ("cmd", "packet")),
    ("gmqtt.mqtt.handler.MqttPackageHandler", "_handle_packet", ("cmd", "packet")),
    ("gmqtt.mqtt.handler.MqttPackageHandler", "_connack_properties", None),
    ("gmqtt.mqtt.connection.MQTTConnection", "publish", ("message",)),
    ("gmqtt.mqtt.connection.MQTTConnection", "close", ()),
    ("gmqtt.storage.PersistentStorage", "push_message", ("mid", "raw_package")),
    ("gmqtt.mqtt.handler", "MQTTConnectError", None),
)

ConnectError: Final[type[Exception]] = gmqtt.mqtt.handler.MQTTConnectError


class AckClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt client that reports each PUBACK with its MQTT 5 reason code."""

    def __init__(self, client_id: str, **kwargs: Any) -> None:
        super().__init__(client_id, **kwargs)
        self.acks: dict[int, asyncio.Future[int]] = {}
        handler = self._package_handler
        original = handler._handle_puback_packet

        def on_puback(cmd: int, packet: bytes) -> None:
            (mid,) = struct.unpack("!H", packet[:2])
            code = packet[2] if len(packet) > 2 else 0  # absent = success (MQTT 5 §3.4.2.1)
            original(cmd, packet)  # gmqtt's own bookkeeping: frees the id, drops the stored packet
            fut = self.acks.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(code)

        # gmqtt looks handlers up by attribute name (and caches them on first use, which
        # has not happened yet on a fresh client): an instance attribute wins.
        handler._handle_puback_packet = on_puback

    def publish_tracked(
        self, topic: str, payload: bytes, retain: bool = False, properties: Mapping[str, Any] | None = None
    ) -> asyncio.Future[int]:
        """QoS 1 publish with MQTT 5 `properties` (gmqtt names, e.g. content_type);
        the future resolves with the PUBACK's reason code."""
        message = gmqtt.Message(topic, payload, qos=1, retain=retain, **(properties or {}))
        mid, package = self._connection.publish(message)
        self._persistent_storage.push_message(mid, package)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.acks[mid] = fut
        return fut

    def fail_all(self, exc: BaseException) -> None:
        for fut in self.acks.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: nobody may be waiting on it any more
        self.acks.clear()


def receive_maximum(client: Any) -> int:
    """The broker's Receive Maximum from its CONNACK (65535 when it sent none)."""
    value = client._package_handler._connack_properties.get("receive_maximum", [65535])
    # gmqtt stores parsed properties as lists; accept a bare value too.
    return int(value[0] if isinstance(value, list) else value)


async def close_client(client: Any, reason_code: int = 0) -> None:
    """Disconnect politely if the link is up (MQTT 5 reason 0x04 asks the broker to
    publish the Will anyway), and always release the socket: a gateway
    reconnecting for days must not leak a file descriptor per attempt."""
    with contextlib.suppress(Exception):
        client.stop_reconnect()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(reason_code=reason_code), 2)
    connection = getattr(client, "_connection", None)
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.close()
