"""`bedside ota fleet-status`: every box's update state, read from the broker.

Each box keeps `bedside/v1/<gw>/status/ota` retained (state, release, installed
version, booted slot, last error) and `bedside/v1/<gw>/status` (online/offline, its
will). The snapshot comes from an ordinary subscription: brokers differ on whether a
shared subscription is handed retained messages (VerneMQ follows the MQTT 5 drafts and
does not; Mosquitto 2.0 does), and the snapshot must work on any of them. `--follow S`
then keeps listening for S seconds on a shared subscription (`$share/<group>/…`), so
several exporters of one group split the stream of changes instead of each handling
all of it; retained copies re-sent on that subscription are not reported as changes.

With `--dir FLEET` the rollout's progress is computed: who each release is offered
to (the same pure rule the boxes apply, ota/rollout.py), who runs it, who is on the way
and who failed. Reads only; publishes nothing.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from ota.errors import FleetError, OtaError
from ota.rollout import RolloutPolicy, eligible

__all__ = ["BoxStatus", "ReleaseProgress", "collect", "progress", "render"]

STATUS_TOPICS: Final = ("bedside/v1/+/status/ota", "bedside/v1/+/status")
_IN_FLIGHT: Final = frozenset(
    {"checking", "downloading", "verified", "installing", "installed", "rebooting", "health_check"}
)
_COLUMNS: Final = ("gateway", "online", "installed", "slot", "state", "release", "error")


@dataclass(slots=True)
class BoxStatus:
    gateway: str
    online: str = ""
    installed: str = ""
    slot: str = ""
    state: str = ""
    release: str = ""
    error: str = ""
    given_up: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in _COLUMNS} | {"given_up": self.given_up}


def _apply(boxes: dict[str, BoxStatus], topic: str, payload: bytes) -> BoxStatus | None:
    parts = topic.split("/")
    if len(parts) < 4 or parts[:2] != ["bedside", "v1"]:
        return None
    box = boxes.setdefault(parts[2], BoxStatus(parts[2]))
    try:
        data = json.loads(payload) if payload else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        return box
    if parts[3:] == ["status"]:
        box.online = str(data.get("state", ""))
    elif parts[3:] == ["status", "ota"]:
        box.installed = str(data.get("installed", box.installed))
        box.slot = str(data.get("slot", box.slot))
        box.state = str(data.get("state", ""))
        box.release = str(data.get("release", ""))
        box.error = str(data.get("error", ""))
        box.given_up = [str(v) for v in data.get("given_up", box.given_up)]
    return box


def collect(
    host: str, port: int, tls: tuple[str, str, str], *, settle_s: float = 1.0, timeout_s: float = 10.0,
    follow_s: float = 0.0, share: str = "bedside-fleet-status", on_change: Any = None,
) -> dict[str, BoxStatus]:  # fmt: skip
    """Retained statuses until `settle_s` passes without a new one; then, with
    `follow_s`, changes on a shared subscription (each passed to `on_change`)."""
    import paho.mqtt.client as mqtt  # only this command needs it
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    ca, cert, key = tls
    boxes: dict[str, BoxStatus] = {}
    lock = threading.Lock()
    subscribed = threading.Event()
    last = [time.monotonic()]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    try:
        client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    except (OSError, ssl.SSLError) as exc:
        raise FleetError(f"TLS files: {exc}") from None

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        with lock:
            box = _apply(boxes, msg.topic, msg.payload)
            last[0] = time.monotonic()
        if box is not None and on_change is not None and not msg.retain:
            on_change(box)

    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        raise OtaError(f"broker {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        client.subscribe([(t, 1) for t in STATUS_TOPICS])
        deadline = time.monotonic() + timeout_s
        if not subscribed.wait(timeout_s):
            raise OtaError(f"broker {host}:{port}: no subscription acknowledgement in {timeout_s:g} s")
        while time.monotonic() < deadline and time.monotonic() - last[0] < settle_s:
            time.sleep(0.05)
        if follow_s > 0:
            client.unsubscribe(list(STATUS_TOPICS))
            client.subscribe([(f"$share/{share}/{t}", 1) for t in STATUS_TOPICS])
            time.sleep(follow_s)
    finally:
        client.disconnect()  # before loop_stop: the loop then ends at once, not at its select timeout
        client.loop_stop()
    with lock:
        return dict(boxes)


@dataclass(frozen=True, slots=True)
class ReleaseProgress:
    path: str
    version: str
    policy: RolloutPolicy
    offered: int  # seen boxes the rollout includes now
    running: int  # seen boxes with it installed
    updating: int
    failed: int

    def line(self, seen: int) -> str:
        halted = " HALTED" if self.policy.halted else ""
        return (f"{self.path}: rollout {self.policy.percent} %{halted}, offered to {self.offered} of {seen} "
                f"boxes seen; running {self.running}, updating {self.updating}, failed {self.failed}")  # fmt: skip


def progress(boxes: Iterable[BoxStatus], targets: dict[str, Any], now: datetime) -> list[ReleaseProgress]:
    """Per release in the signed targets: how far its rollout got among the boxes seen."""
    seen = list(boxes)
    out = []
    for path, target in sorted(targets.items()):
        custom = target.custom or {}
        version = str(custom.get("version", ""))
        policy = RolloutPolicy.from_json(custom.get("rollout"))
        out.append(
            ReleaseProgress(
                path, version, policy,
                offered=sum(eligible(policy, b.gateway, now)[0] for b in seen),
                running=sum(b.installed == version for b in seen),
                updating=sum(b.release == version and b.state in _IN_FLIGHT for b in seen),
                failed=sum(version in b.given_up or (b.release == version and b.state == "failed") for b in seen),
            )
        )  # fmt: skip
    return out


def render(boxes: dict[str, BoxStatus], fmt: str) -> str:
    rows = [boxes[g].row() for g in sorted(boxes)]
    if fmt == "json":
        return "\n".join(json.dumps(r, sort_keys=True) for r in rows)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*_COLUMNS, "given_up"], lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "given_up": " ".join(r["given_up"])})
        return buf.getvalue().rstrip("\n")
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in _COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in _COLUMNS)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in _COLUMNS) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
