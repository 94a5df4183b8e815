"""Servers the socket tests start on loopback: uvicorn around an ASGI app, the websockets
server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def uvicorn_server(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its ``ws://`` base URL
    (``wss://`` when ``ssl_certfile`` is given)."""
    import uvicorn

    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "log_level": "warning",
        "ws": "websockets-sansio",
        "lifespan": "off",
    }
    settings.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "wss" if "ssl_certfile" in config else "ws"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)
