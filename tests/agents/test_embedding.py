"""docs/examples/starlette_agent.py runs as written: Starlette under uvicorn, a Twilio
voice webhook returning TwiML, and the demo agent answering on the media WebSocket."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("pocketsphinx", reason="the example's agent is the offline demo agent")
pytest.importorskip("espeakng_loader", reason="the example's agent speaks with espeak-ng")
pytest.importorskip("starlette", reason="the example is a Starlette app")
pytest.importorskip("uvicorn", reason="the example runs under uvicorn")

from voxwire.sim import PROVIDERS, Turn, place_dialog, synthesize

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "starlette_agent.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("starlette_agent", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_starlette_example_answers_a_call() -> None:
    import uvicorn

    example = load_example()

    async def main() -> tuple[str, object]:
        config = uvicorn.Config(
            example.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /voice HTTP/1.1\r\nHost: voice.example.com\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            answer = (await reader.read()).decode()
            writer.close()
            said = synthesize(
                "What are your opening hours?", PROVIDERS["twilio"].default_rate, voice="en-us"
            )
            report = await asyncio.wait_for(
                place_dialog(f"ws://127.0.0.1:{port}/media", "twilio", [Turn(), Turn(said)]),
                40,
            )
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        return answer, report

    twiml, report = asyncio.run(main())
    assert '<Stream url="wss://voice.example.com/media"' in twiml
    greeting, answer = report.turns  # type: ignore[attr-defined]
    assert greeting.reply_start is not None  # the agent greets the caller
    assert answer.reply_start is not None
    assert len(answer.heard) > report.rate  # type: ignore[attr-defined]
