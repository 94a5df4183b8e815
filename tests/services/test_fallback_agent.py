"""A voice agent call whose primary LLM and TTS fail still answers, through the fallbacks.

The call runs over loopback sockets (the simulated phone speaks espeak-ng speech over a
Twilio-style WebSocket); the primary model is the OpenAI-compatible client against a
local server that answers HTTP 500, the primary synthesiser the ElevenLabs client against
a local server that sends an error for every context. The offline engines behind them
answer. The switches are logged with the call's id and recorded in the turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

pytest.importorskip("aiohttp", reason="the HTTP clients need aiohttp")
pytest.importorskip("websockets", reason="the WebSocket clients need websockets")
pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")

from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server
from voxwire.aio.surface import CallSurface
from voxwire.services.base import ChatMessage
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts
from voxwire.services.fallback import FallbackLLM, FallbackTTS
from voxwire.services.llm_openai import OpenAIChatModel
from voxwire.services.retry import NO_RETRY
from voxwire.services.testing.llm import FakeServer, Script
from voxwire.services.testing.tts import ElevenLabsFake
from voxwire.services.tts_elevenlabs import ElevenLabsTts
from voxwire.sim import PROVIDERS, CallPlan, CallReport, place_call, synthesize

QUESTION = "What are your opening hours?"
ANSWER = "We open at nine."
KEY = "fake-key-SECRET-agent-0042"


def test_a_call_with_failing_primaries_is_answered_by_the_fallbacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    def reply(messages: Sequence[ChatMessage]) -> str:
        return ANSWER

    async def main() -> tuple[CallReport, list[AgentCallResult], ElevenLabsFake, FakeServer]:
        results: list[AgentCallResult] = []

        def on_end(call: CallSurface, result: AgentCallResult) -> None:
            results.append(result)

        error = b'{"error": {"message": "the model is down", "type": "server_error"}}'
        async with (
            FakeServer([Script([error], status=500)] * 3) as llm_server,
            ElevenLabsFake(16000, mode="error", key=KEY) as tts_server,
        ):
            primary_llm = OpenAIChatModel(f"{llm_server.base}/v1", "m", api_key=KEY, retry=NO_RETRY)
            primary_tts = ElevenLabsTts("v", api_key=KEY, base_url=tts_server.base)
            agent = VoiceAgent(
                FakeStt([QUESTION.lower()]),
                FallbackLLM([primary_llm, FakeLlm(reply)]),
                FallbackTTS([primary_tts, FakeTts()]),
                on_end=on_end,
            )
            plan = CallPlan(synthesize(QUESTION, PROVIDERS["twilio"].default_rate, seed=1))
            async with agent_server(agent, "twilio") as url:
                report = await asyncio.wait_for(place_call(url, "twilio", plan), 20)
                for _ in range(150):
                    if results:
                        break
                    await asyncio.sleep(0.02)
            await primary_llm.aclose()
            await primary_tts.aclose()
        return report, results, tts_server, llm_server

    report, results, tts_server, llm_server = asyncio.run(main())
    (said,) = report.utterances
    assert said.reply_start is not None, report.summary()  # the caller heard the answer
    (result,) = results
    assert [m.content for m in result.history.messages] == [QUESTION.lower(), ANSWER]
    (turn,) = result.turns
    assert turn.fallbacks == ["llm:status_500->FakeLlm", "tts:server_error->FakeTts"]
    assert result.errors == {"llm:status_500": 1, "tts:server_error": 1}
    assert len(llm_server.requests) == 1
    # the synthesiser's connection was opened when the call started, before the turn
    assert tts_server.connections == 1
    assert tts_server.connected_at[0] < turn.speech_end  # type: ignore[operator]
    logged = [r.getMessage() for r in caplog.records if "fallback" in r.getMessage()]
    assert any(
        "call '" in m and "fallback llm: OpenAIChatModel -> FakeLlm after status_500" in m
        for m in logged
    ), logged
    assert any("fallback tts: ElevenLabsTts -> FakeTts after server_error" in m for m in logged)
    assert all(KEY not in r.getMessage() for r in caplog.records)
