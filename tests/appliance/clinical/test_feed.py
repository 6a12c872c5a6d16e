"""The ADT feed's set-up refuses what it cannot run, in one line (exit 2), before READY;
the operator command over the control socket carries the operator's user name."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest

from appliance.clinical.feed import AdtFeedError
from appliance.config import ConfigError, parse_config
from appliance.control import ControlServer, request
from appliance.gateway import Gateway
from appliance.sdnotify import Notifier
from hil.broker import Pki
from rules.outputs import MemoryOutput
from tests.integration.helpers import cli


def clinical_config(tmp_path, clinical: str) -> str:
    return f'[gateway]\nbed_id = "ICU-1"\nregistry_path = "{tmp_path / "r.json"}"\n[clinical]\n{clinical}'


def test_an_adt_feed_without_a_census_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"clinical.adt_listen: the ADT feed keeps the census"):
        parse_config(clinical_config(tmp_path, 'adt_listen = "tcp://127.0.0.1:0"\n'))


def test_tls_without_files_or_with_an_open_key_is_one_line(tmp_path, pki: Pki):
    census = f'census_path = "{tmp_path / "c.json"}"\n'
    cfg = parse_config(clinical_config(tmp_path, census + 'adt_listen = "tls://127.0.0.1:0"\n'))
    with pytest.raises(AdtFeedError, match=r"clinical.adt_tls_ca_path: required for a tls:// ADT listener"):
        Gateway(cfg, notifier=Notifier({}), outputs=[MemoryOutput()])
    key = tmp_path / "open.key"
    key.write_bytes((pki.dir / "broker.key").read_bytes())
    os.chmod(key, 0o644)
    files = (f'adt_tls_cert_path = "{pki.dir / "broker.pem"}"\nadt_tls_key_path = "{key}"\n'
             f'adt_tls_ca_path = "{pki.ca}"\n')  # fmt: skip
    cfg = parse_config(clinical_config(tmp_path, census + 'adt_listen = "tls://127.0.0.1:0"\n' + files))
    with pytest.raises(AdtFeedError) as info:
        Gateway(cfg, notifier=Notifier({}), outputs=[MemoryOutput()])
    assert str(info.value) == f"{key}: listener key mode 0644 is readable by others; chmod 600"


def test_a_busy_adt_port_is_found_before_ready(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        census = f'census_path = "{tmp_path / "c.json"}"\nadt_listen = "tcp://127.0.0.1:{port}"\n'
        (tmp_path / "g.toml").write_text(clinical_config(tmp_path, census))
        res = cli("run", "--config", str(tmp_path / "g.toml"))
    assert res.returncode == 2 and b"Traceback" not in res.stderr
    assert (
        res.stderr.decode().strip()
        == f"bedside: {tmp_path / 'g.toml'}: clinical.adt_listen: 127.0.0.1:{port}: port {port} is already in use"
    )


async def test_a_handler_gets_the_peer_uid_and_refusals_are_one_line(tmp_path):
    seen: list[tuple[dict[str, Any], int | None]] = []

    async def release(req: dict[str, Any], uid: int | None) -> dict[str, Any]:
        seen.append((req, uid))
        if req.get("device") == "bad":
            from appliance.clinical.release import ReleaseRefused

            raise ReleaseRefused("device 'bad' is not paired to a patient")
        return {"ok": True, "released": 0}

    path = tmp_path / "ctl.sock"
    server = ControlServer(None, path, handlers={"release": release})  # type: ignore[arg-type]
    task = asyncio.create_task(server.run())
    try:
        while not path.exists():
            await asyncio.sleep(0.01)
        reply = await asyncio.to_thread(request, path, {"cmd": "release", "device": "m"})
        assert reply == {"ok": True, "released": 0} and seen[0][1] == os.getuid()
        with pytest.raises(Exception, match=r"device 'bad' is not paired to a patient$"):
            await asyncio.to_thread(request, path, {"cmd": "release", "device": "bad"})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
