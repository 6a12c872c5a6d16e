"""A deliberately broken IntelliVue driver, for tests/hil/suite/test_broken_driver.py.

Python imports `sitecustomize` at start-up from sys.path; the test puts this folder
first on PYTHONPATH of `bedside hil run`, so the gateway it starts (a child process
with the same environment) runs with the driver broken as BEDSIDE_BROKEN_DRIVER says:

- `no-reassociate`: the session associates once; after it is lost (the monitor
  rebooted and fell silent) the driver never sends an association request again, so
  a monitor back in its power-on state ignores its polls for ever.

Nothing here is in the shipped code path: the folder is only on the path in that test.
"""

from __future__ import annotations

import os
from typing import Any


def _no_reassociate() -> None:
    from drivers.intellivue import codec

    send = codec.IntelliVueCodec._send_association

    def _send_association(self: Any, now: float) -> None:
        if getattr(self, "_broken_once", False):
            self._retry_after_s = now + self.timing.assoc_retry_s  # waits, and never asks
            return
        self._broken_once = True
        send(self, now)

    codec.IntelliVueCodec._send_association = _send_association  # type: ignore[method-assign]


_BREAK = {"no-reassociate": _no_reassociate}
if (_how := os.environ.get("BEDSIDE_BROKEN_DRIVER", "")) in _BREAK:
    _BREAK[_how]()
