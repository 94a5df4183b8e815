"""Warm-up at call start: after ``prepare()`` the first turn pays no handshake.

Each fake server sees the connection opened by ``prepare()`` (HTTP: a ``GET .../models``
whose connection is kept alive; ElevenLabs and Cartesia: the WebSocket) and then the
first turn's request arrive on that same connection, with no second one. The OpenAI
transcription stream opens its connection with the first audio pushed, before the
utterance ends.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the HTTP clients need aiohttp")
pytest.importorskip("websockets", reason="the WebSocket clients need websockets")

from voxwire.errors import ServiceError
from voxwire.services.base import ChatMessage, LanguageModel
from voxwire.services.fake import FakeLlm
from voxwire.services.fallback import FallbackLLM
from voxwire.services.llm_anthropic import AnthropicModel
from voxwire.services.llm_openai import OpenAIChatModel
from voxwire.services.stt_openai import OpenAITranscriptionStt
from voxwire.services.testing.llm import (
    FakeServer,
    Script,
    anthropic_end,
    anthropic_start,
    anthropic_text_block,
    openai_text,
)
from voxwire.services.testing.stt import FakeTranscriptions
from voxwire.services.testing.tts import CartesiaFake, ElevenLabsFake, OpenAISpeechFake
from voxwire.services.tts_cartesia import CartesiaTts
from voxwire.services.tts_elevenlabs import ElevenLabsTts
from voxwire.services.tts_openai import OpenAISpeechTts

KEY = "k-warm-SECRET-0042"
HELLO = (ChatMessage("user", "Hi"),)


def anthropic_reply() -> list[bytes]:
    return [anthropic_start(), *anthropic_text_block(0, ["Hi", " there."]), *anthropic_end()]


async def reply(model: LanguageModel) -> None:
    async with model.complete(HELLO) as stream:
        async for _ in stream:
            pass


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
def test_llm_first_turn_goes_on_the_connection_prepare_opened(vendor: str) -> None:
    async def main() -> None:
        pieces = openai_text(["Hi", " there."]) if vendor == "openai" else anthropic_reply()
        async with FakeServer([Script(pieces), Script(pieces)]) as server:
            model: OpenAIChatModel | AnthropicModel
            if vendor == "openai":
                model = OpenAIChatModel(f"{server.base}/v1", "m", api_key=KEY)
            else:
                model = AnthropicModel("c", api_key=KEY, base_url=server.base)
            try:
                await model.prepare()
                (warm,) = server.warmups
                assert warm.path == "/v1/models"
                if vendor == "openai":
                    assert warm.headers["Authorization"] == f"Bearer {KEY}"
                else:
                    assert warm.headers["x-api-key"] == KEY
                assert not server.requests  # nothing was asked of the model yet
                await reply(model)
                await reply(model)
                assert [r.peer for r in server.requests] == [warm.peer, warm.peer]
                assert len(server.warmups) == 1
            finally:
                await model.aclose()

    asyncio.run(main())


def test_prepare_again_sends_nothing_on_a_recently_used_session_and_rewarms_an_idle_one() -> None:
    async def main() -> None:
        pieces = openai_text(["Hi", " there."])
        async with FakeServer([Script(pieces)]) as server:
            model = OpenAIChatModel(f"{server.base}/v1", "m", api_key=KEY)
            model.rewarm_after = 0.3
            try:
                await model.prepare()
                await model.prepare()  # just warmed: taken as open
                await reply(model)
                await model.prepare()  # just used
                assert len(server.warmups) == 1
                await asyncio.sleep(0.4)  # idle for longer than rewarm_after
                await model.prepare()
                assert len(server.warmups) == 2
            finally:
                await model.aclose()

    asyncio.run(main())


def test_openai_speech_first_reply_goes_on_the_connection_prepare_opened() -> None:
    async def main() -> None:
        async with OpenAISpeechFake(key=KEY) as server:
            tts = OpenAISpeechTts(server.base, api_key=KEY)
            try:
                await tts.prepare()
                (warm,) = server.warmups
                assert warm.path == "/v1/models"
                stream = tts.stream()
                stream.push("Hello there.")
                stream.flush()
                stream.end_input()
                async for _ in stream:
                    pass
                await stream.aclose()
                (request,) = server.requests
                assert request.peer == warm.peer
            finally:
                await tts.aclose()

    asyncio.run(main())


def test_transcription_stream_connects_with_the_first_audio() -> None:
    async def main() -> None:
        async with FakeTranscriptions() as server:
            stt = OpenAITranscriptionStt(server.base, api_key=KEY)
            stream = stt.stream()
            try:
                stream.push(np.zeros(320, np.int16))
                for _ in range(400):
                    if server.warmups:
                        break
                    await asyncio.sleep(0.005)
                (warm,) = server.warmups
                assert not server.uploads  # the utterance has not ended
                stream.push(np.full(8000, 1000, np.int16))
                stream.finalize()
                result = await asyncio.wait_for(stream.__anext__(), 5.0)
                assert result.final
                (upload,) = server.uploads
                assert upload.peer == warm.peer
            finally:
                await stream.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("vendor", ["elevenlabs", "cartesia"])
def test_ws_tts_first_reply_goes_on_the_socket_prepare_opened(vendor: str) -> None:
    async def main() -> None:
        fake = ElevenLabsFake(key=KEY) if vendor == "elevenlabs" else CartesiaFake(key=KEY)
        async with fake:
            tts: ElevenLabsTts | CartesiaTts
            if vendor == "elevenlabs":
                tts = ElevenLabsTts("v", api_key=KEY, base_url=fake.base)
            else:
                tts = CartesiaTts("v", api_key=KEY, base_url=fake.base)
            try:
                await tts.prepare()
                assert fake.connections == 1
                assert not fake.contexts  # no reply yet
                for _ in range(2):
                    stream = tts.stream()
                    stream.push("Hello there.")
                    stream.flush()
                    stream.end_input()
                    async for _ in stream:
                        pass
                    await stream.aclose()
                assert len(fake.contexts) == 2
                assert fake.connections == 1
            finally:
                await tts.aclose()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_prepare_of_an_unreachable_server_is_a_typed_error_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        model = OpenAIChatModel(f"http://127.0.0.1:{free_port()}/v1", "m", api_key=KEY)
        try:
            with pytest.raises(ServiceError) as info:
                await model.prepare()
            assert info.value.reason == "connect"
            assert KEY not in str(info.value)
        finally:
            await model.aclose()

    asyncio.run(main())
    assert not [r for r in caplog.records if KEY in r.getMessage()]


def test_a_chain_cools_down_a_model_that_cannot_be_prepared() -> None:
    async def main() -> None:
        down = OpenAIChatModel(f"http://127.0.0.1:{free_port()}/v1", "m", api_key=KEY)
        chain = FallbackLLM([down, FakeLlm(lambda m: "Fine.", first_token=0.0)])
        try:
            await chain.prepare()
            assert chain.failures == {"llm:connect": 1}
            text = ""
            async for event in chain.complete(HELLO):
                text += getattr(event, "text", "")
            assert text == "Fine."
            assert chain.switches == 0  # the turn started on the engine: no failed attempt
        finally:
            await down.aclose()

    asyncio.run(main())
