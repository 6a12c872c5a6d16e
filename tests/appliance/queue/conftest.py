"""Every store a queue test opens is closed when the test ends: many tests open one to
look and let it go, and Python 3.13 warns (an error here) about each sqlite3 connection
left to the garbage collector."""

from collections.abc import Iterator
from typing import Any

import pytest

from appliance.queue.store import Store


@pytest.fixture(autouse=True)
def _close_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    opened: list[Store] = []
    real_init = Store.__init__

    def init(self: Store, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(self)  # only a store that opened holds a connection (a failed open closes its own)

    monkeypatch.setattr(Store, "__init__", init)
    yield
    for store in opened:
        store.close()  # sqlite3's close is idempotent: stores the test closed stay closed
