"""Listening until cancelled and closing an asyncio server, the same on Python 3.11 (the
build and test host) and 3.13 (the image).

Since Python 3.12, `Server.serve_forever` waits for every connection to close when it is
cancelled, and `Server.wait_closed` waits for them too (3.11 waited for neither). A
listener that cancels its handlers only after that wait (as `async with server` around
`serve_forever` does) hung at shutdown while a client stayed connected (a device on a
long-lived connection). So: `serve_until_cancelled`, then the owner ends its handlers,
then `close_server`.
"""

from __future__ import annotations

import asyncio

__all__ = ["close_server", "serve_until_cancelled"]


async def serve_until_cancelled() -> None:
    """What a listener awaits instead of `serve_forever`: start_server already serves."""
    await asyncio.get_running_loop().create_future()


async def close_server(server: asyncio.AbstractServer) -> None:
    """Stop accepting, drop connections no handler has closed (one still in its TLS
    handshake has no handler yet; `abort_clients` is 3.13's), wait for the listener."""
    server.close()
    abort_clients = getattr(server, "abort_clients", None)
    if abort_clients is not None:
        abort_clients()
    await server.wait_closed()
