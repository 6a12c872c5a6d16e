"""Operator control of local alarms over a Unix socket (mode 0660).

One JSON object per line in, one per line out:
  {"cmd": "list"} | {"cmd": "ack", "bed": "ICU-1", "rule": "spo2-low"} |
  {"cmd": "pause", "bed": "ICU-1"} | {"cmd": "audit"}
Requests are bounded in size; a malformed one gets {"ok": false, "error": …}.
Access control is the socket's group (the clinical-engineering group on the box).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Final

from appliance.alarms import AlarmCircuit
from rules.engine import Ack, Pause

__all__ = ["ControlError", "ControlServer", "request"]

MAX_REQUEST_BYTES: Final = 4096
SOCKET_MODE: Final = 0o660


class ControlError(Exception):
    """The control socket cannot be reached or answered with an error."""


class ControlServer:
    def __init__(self, circuit: AlarmCircuit, path: str | Path) -> None:
        self.circuit = circuit
        self.path = Path(path)

    def handle(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        cmd = req.get("cmd")
        bed, rule = req.get("bed"), req.get("rule")
        if not all(v is None or isinstance(v, str) for v in (bed, rule)):
            return {"ok": False, "error": "bed and rule must be strings"}
        if cmd == "ack":
            self.circuit.command(Ack(bed, rule))
        elif cmd == "pause":
            self.circuit.command(Pause(bed))
        elif cmd == "audit":
            return {"ok": True, "audit": [a.to_json_dict() for a in list(self.circuit.arbiter.audit)[-100:]]}
        elif cmd != "list":
            return {"ok": False, "error": f"unknown cmd {cmd!r}; use list, ack, pause or audit"}
        alarms = self.circuit.alarms()
        if bed is not None:
            alarms = [a for a in alarms if a["bed_id"] == bed]
        return {"ok": True, "alarms": alarms}

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            try:
                reply = self.handle(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                reply = {"ok": False, "error": "request is not JSON"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError):
            pass  # slow, oversized or vanished client: just drop it
        finally:
            writer.close()

    async def run(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a previous run
        self.path.parent.mkdir(parents=True, exist_ok=True)
        server = await asyncio.start_unix_server(self._client, self.path, limit=MAX_REQUEST_BYTES)
        os.chmod(self.path, SOCKET_MODE)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def request(path: str | Path, payload: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Blocking client used by the CLI."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ControlError(f"{path}: cannot reach the gateway: {exc.strerror or exc}") from exc
    try:
        reply: dict[str, Any] = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ControlError(f"{path}: bad reply from the gateway") from exc
    if not reply.get("ok"):
        raise ControlError(f"{path}: {reply.get('error', 'request refused')}")
    return reply
