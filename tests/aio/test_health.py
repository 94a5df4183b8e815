"""The worker contract for balancers over real sockets: ``GET /health`` and ``GET /ready``
on the WebSocket port before any upgrade, and the HAProxy agent-check responder, through a
call limit being reached and a drain."""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("espeakng_loader", reason="the callers' speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the server needs websockets")

from voxwire.agents.server import serve_echo
from voxwire.aio.admission import Admission
from voxwire.sim.load import run_load


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def agent(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data.decode("ascii")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_health_ready_and_agent_check_through_full_and_drain() -> None:
    admission = Admission(max_calls=2)
    agent_port = free_port()

    async def main() -> dict[str, object]:
        stop = asyncio.Event()
        urls: list[str] = []
        server = asyncio.create_task(
            serve_echo(
                "twilio",
                "127.0.0.1",
                0,
                path="/media",
                stop=stop,
                ready=urls.append,
                admission=admission,
                drain_timeout=20,
                agent_check=("127.0.0.1", agent_port),
                on_end=lambda c, s: None,
            )
        )
        while not urls:
            await asyncio.sleep(0.01)
        port = int(urls[0].rsplit(":", 1)[1].split("/")[0])
        seen: dict[str, object] = {}
        seen["idle"] = (await http_get(port, "/health"), await http_get(port, "/ready"),
                        await agent(agent_port))  # fmt: skip
        seen["other path"] = await http_get(port, "/nothing")
        one = asyncio.create_task(run_load(urls[0], "twilio", 1, duration=2.5, ramp=0))
        while admission.active < 1:
            await asyncio.sleep(0.01)
        seen["one call"] = (await http_get(port, "/ready"), await agent(agent_port))
        two = asyncio.create_task(run_load(urls[0], "twilio", 1, duration=2.5, ramp=0))
        while admission.active < 2:
            await asyncio.sleep(0.01)
        seen["full"] = (await http_get(port, "/health"), await http_get(port, "/ready"),
                        await agent(agent_port))  # fmt: skip
        stop.set()
        while not admission.draining:
            await asyncio.sleep(0.01)
        seen["draining"] = (await http_get(port, "/health"), await http_get(port, "/ready"),
                            await agent(agent_port))  # fmt: skip
        seen["calls"] = (await one, await two)
        await asyncio.wait_for(server, 20)
        return seen

    seen = asyncio.run(main())
    assert seen["idle"] == ((200, "ok\n"), (200, "ready\n"), "up 100%\n")
    assert seen["other path"][0] == 404  # type: ignore[index]
    assert seen["one call"] == ((200, "ready\n"), "up 50%\n")
    assert seen["full"] == ((200, "ok\n"), (503, "full: 2 of 2 calls\n"), "up 0%\n")
    assert seen["draining"] == ((200, "ok\n"), (503, "draining\n"), "drain\n")
    for report in seen["calls"]:  # type: ignore[attr-defined]
        assert report.completed == 1  # both calls finished during the drain
        assert report.replies_missed == 0
