"""A deliberately broken build of the uplink, for tests/hil/suite/test_broken_uplink.py.

Python imports `sitecustomize` at start-up from sys.path; the test puts this folder
first on PYTHONPATH of `bedside hil run`, so the gateway it starts (a child process
with the same environment) runs with the uplink broken as BEDSIDE_BROKEN_UPLINK says:

- `drop-acks`: gmqtt still does its own PUBACK bookkeeping, but the uplink never hears
  of an acknowledgement: nothing is ever deleted, the publish window fills and stays
  full (a gateway that ignores PUBACKs);
- `never-forget`: acknowledgements arrive but the uplink never marks its rows delivered
  (never deletes them): after a reconnect, everything is sent again.

Nothing here is in the shipped code path: the folder is only on the path in that test.
"""

from __future__ import annotations

import os
from typing import Any


def _drop_acks() -> None:
    from appliance.uplink import gmqtt_adapter

    init = gmqtt_adapter.AckClient.__init__

    def __init__(self: Any, client_id: str, **kwargs: Any) -> None:
        init(self, client_id, **kwargs)
        handler = self._package_handler
        gmqtt_own = type(handler)._handle_puback_packet.__get__(handler)
        handler._handle_puback_packet = gmqtt_own  # the uplink's future is never resolved

    gmqtt_adapter.AckClient.__init__ = __init__  # type: ignore[method-assign]


def _never_forget() -> None:
    from appliance.uplink import client

    async def _forget(self: Any, row_ids: list[int]) -> None:
        return None

    client.Uplink._forget = _forget  # type: ignore[method-assign]


_BREAK = {"drop-acks": _drop_acks, "never-forget": _never_forget}
if (_how := os.environ.get("BEDSIDE_BROKEN_UPLINK", "")) in _BREAK:
    _BREAK[_how]()
