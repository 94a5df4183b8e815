"""An agent for ``voxwire serve --protocol sip --agent sip_agents:hang_up_soon`` in the
tests: it answers, waits half a second and hangs up (the server then sends BYE)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from voxwire.aio.surface import CallSurface


def hang_up_soon() -> Callable[[CallSurface], Awaitable[None]]:
    async def handler(call: CallSurface) -> None:
        await asyncio.sleep(0.5)
        await call.close(1000, "the agent is done")

    return handler
