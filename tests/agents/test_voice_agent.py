"""The voice agent end to end over loopback sockets, with the fake services.

The simulated phone speaks espeak-ng speech; the agent's fake recogniser reads a script,
the fake model answers, the fake synthesiser speaks word-timed audio. Each call runs
against its own server on 127.0.0.1 (port 0), bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server
from voxwire.aio import Call
from voxwire.services.base import ChatMessage, ToolCall
from voxwire.services.fake import FakeLlm, FakeReply, FakeStt, FakeTts
from voxwire.sim import PROVIDERS, CallPlan, CallReport, place_call, synthesize
from voxwire.voice.conversation import VoiceConfig
from voxwire.voice.tools import tool

SAY = "What are your opening hours?"
BARGE = "Sorry to interrupt you there."
LONG = (
    "We are open from nine in the morning until five in the evening on weekdays, "
    "and from ten until two on Saturdays, and we are closed on Sundays and holidays."
)


def speech(protocol: str, text: str = SAY, seed: int = 1) -> np.ndarray:
    return synthesize(text, PROVIDERS[protocol].default_rate, seed=seed)


async def agent_call(
    protocol: str, plan: CallPlan, agent: VoiceAgent, timeout: float = 20.0
) -> tuple[CallReport, list[AgentCallResult]]:
    results: list[AgentCallResult] = []

    def on_end(call: Call, result: AgentCallResult) -> None:
        results.append(result)

    agent.on_end = on_end
    async with agent_server(agent, protocol) as url:
        report = await asyncio.wait_for(place_call(url, protocol, plan), timeout)
        for _ in range(150):
            if results:
                break
            await asyncio.sleep(0.02)
    return report, results


def answer(text: str):  # type: ignore[no-untyped-def]
    def reply(messages: Sequence[ChatMessage]) -> str:
        return text

    return reply


ANSWER = "We open at nine. We close at five."
ASKED = ["twilio", "vonage", "audiosocket"]
BARGED = ["twilio", "telnyx", "jambonz"]


class PreparedLlm(FakeLlm):
    """The fake model, counting the agent's calls of ``prepare()`` (a hosted client's
    warm-up)."""

    prepares = 0

    async def prepare(self) -> None:
        self.prepares += 1


def answering_agent() -> VoiceAgent:
    return VoiceAgent(
        FakeStt([SAY.lower()]), PreparedLlm(answer(ANSWER)), FakeTts(), system_prompt="Be brief."
    )


def barged_agent() -> VoiceAgent:
    return VoiceAgent(
        FakeStt([SAY.lower(), "sorry to interrupt"]), FakeLlm(answer(LONG)), FakeTts()
    )


booked: list[str] = []


@tool
def book(day: str) -> str:
    """Book an appointment.

    Parameters
    ----------
    day : str
        The day.
    """
    booked.append(day)
    return f"booked for {day}, id 7"


def booking_reply(messages: Sequence[ChatMessage]) -> FakeReply:
    if messages[-1].role == "tool":
        return FakeReply(f"Done: {messages[-1].content}.")
    return FakeReply("Let me book that.", [ToolCall("call_1", "book", {"day": "monday"})])


held_bookings: list[str] = []


@tool
def hold_slot(day: str) -> str:
    """Hold a slot.

    Parameters
    ----------
    day : str
        The day.
    """
    held_bookings.append(day)
    return f"held {day}"


def holding_reply(messages: Sequence[ChatMessage]) -> FakeReply:
    if messages[-1].role == "tool":
        return FakeReply(f"Done: {messages[-1].content}.")
    return FakeReply("", [ToolCall("call_9", "hold_slot", {"day": "friday"})])


PREEMPTIVE = VoiceConfig(preemptive=True)


def broken_reply(messages: Sequence[ChatMessage]) -> str:
    raise RuntimeError("the model is down")


def goodbye_reply(messages: Sequence[ChatMessage]) -> FakeReply:
    return FakeReply("Goodbye!", [ToolCall("c1", "end_call", {})])


Outcome = tuple[CallReport, list[AgentCallResult], VoiceAgent]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    """Every call of this module, run at once (each against its own server)."""
    agents: dict[str, tuple[str, CallPlan, VoiceAgent]] = {}
    for p in ASKED:
        agents[f"ask-{p}"] = (p, CallPlan(speech(p)), answering_agent())
    for p in BARGED:
        plan = CallPlan(speech(p), barge_in=speech(p, BARGE, 2), barge_in_after=1.0)
        agents[f"barge-{p}"] = (p, plan, barged_agent())
    plan = CallPlan(speech("twilio"))
    agents["tool"] = (
        "twilio",
        plan,
        VoiceAgent(
            FakeStt(["book me for monday"]), FakeLlm(booking_reply), FakeTts(), tools=[book]
        ),
    )
    # plain text (no punctuation): the policy waits 420 ms, the reply is prepared in it
    agents["preemptive"] = (
        "vonage",
        CallPlan(speech("vonage")),
        VoiceAgent(
            FakeStt(["what are your opening hours"]),
            FakeLlm(answer(ANSWER)),
            FakeTts(),
            config=PREEMPTIVE,
        ),
    )
    agents["preemptive-tool"] = (
        "twilio",
        plan,
        VoiceAgent(
            FakeStt(["hold friday for me"]),
            FakeLlm(holding_reply),
            FakeTts(),
            tools=[hold_slot],
            config=PREEMPTIVE,
        ),
    )
    agents["broken"] = (
        "twilio",
        plan,
        VoiceAgent(FakeStt(["hello"]), FakeLlm(broken_reply), FakeTts()),
    )
    agents["goodbye"] = (
        "twilio",
        CallPlan(speech("twilio"), quiet=3.0),  # the caller listens on: the agent hangs up
        VoiceAgent(FakeStt(["bye"]), FakeLlm(goodbye_reply), FakeTts()),
    )

    async def main() -> dict[str, Outcome]:
        names = list(agents)
        runs = [agent_call(p, plan, agent) for p, plan, agent in agents.values()]
        results = await asyncio.wait_for(asyncio.gather(*runs), 60)
        return {n: (*r, agents[n][2]) for n, r in zip(names, results, strict=True)}

    return asyncio.run(main())


@pytest.mark.parametrize("protocol", ASKED)
def test_the_agent_answers_a_question(outcomes: dict[str, Outcome], protocol: str) -> None:
    report, results, agent = outcomes[f"ask-{protocol}"]
    (said,) = report.utterances
    assert said.reply_start is not None, report.summary()
    (result,) = results
    assert [m.role for m in result.history.messages] == ["user", "assistant"]
    assert result.history.messages[1].content == ANSWER
    assert isinstance(agent.llm, FakeLlm)
    assert agent.llm.requests[0].messages[0] == ChatMessage("system", "Be brief.")
    (turn,) = result.turns
    assert turn.user_text == SAY.lower()
    assert turn.first_audio_played is not None, turn.log_line()
    assert turn.reply_latency is not None
    assert turn.reply_latency > 0.1 + 0.2  # the recogniser's and the model's latencies
    assert not turn.interrupted
    # warmed up at the call's start, and again as the caller began to speak
    assert isinstance(agent.llm, PreparedLlm)
    assert agent.llm.prepares >= 2


@pytest.mark.parametrize("protocol", BARGED)
def test_barge_in_stops_the_reply_and_cuts_the_context(
    outcomes: dict[str, Outcome], protocol: str
) -> None:
    report, results, agent = outcomes[f"barge-{protocol}"]
    assert report.clears, report.summary()
    assert report.clear_latency is not None
    (result,) = results
    first = result.turns[0]
    assert first.interrupted
    heard = result.history.messages[1]
    assert heard.role == "assistant"
    assert heard.content, "a second of the reply played: its first words were heard"
    assert LONG.startswith(heard.content)
    assert len(heard.content) < len(LONG) / 2
    assert first.heard_text == heard.content
    # the synthesiser is faster than real time: it had finished, and only the audio
    # queued at the phone was left to stop
    assert isinstance(agent.tts, FakeTts)
    assert agent.tts.requests[0].done
    # the caller's interruption was its next turn, answered in turn
    assert [m.role for m in result.history.messages[:3]] == ["user", "assistant", "user"]


def test_a_tool_call_runs_and_its_result_reaches_the_model(outcomes: dict[str, Outcome]) -> None:
    report, results, _ = outcomes["tool"]
    assert booked == ["monday"]
    (result,) = results
    roles = [m.role for m in result.history.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert result.history.messages[-1].content == "Done: booked for monday, id 7."
    assert result.turns[0].tools[0].name == "book"
    assert report.utterances[0].reply_start is not None


def test_a_failing_model_is_answered_with_an_apology(outcomes: dict[str, Outcome]) -> None:
    report, results, agent = outcomes["broken"]
    (result,) = results
    assert result.history.messages[-1].content == agent.config.apology_text
    assert sum(result.errors.values()) == 1
    assert report.utterances[0].reply_start is not None  # the apology was heard


def test_the_agent_hangs_up_after_its_goodbye(outcomes: dict[str, Outcome]) -> None:
    report, results, _ = outcomes["goodbye"]
    (result,) = results
    assert result.hung_up
    assert report.closed_by_server
    assert report.utterances[0].reply_start is not None


def test_a_preemptive_reply_is_prepared_in_the_wait_and_heard(
    outcomes: dict[str, Outcome],
) -> None:
    report, results, agent = outcomes["preemptive"]
    (said,) = report.utterances
    assert said.reply_start is not None, report.summary()
    (result,) = results
    assert result.drafts == {"started": 1, "used": 1, "discarded": 0}
    (turn,) = result.turns
    assert turn.preemptive
    assert turn.llm_request is not None
    assert turn.endpoint is not None
    assert turn.llm_request < turn.endpoint  # the model ran while the policy waited
    assert [m.content for m in result.history.messages] == ["what are your opening hours", ANSWER]
    assert isinstance(agent.llm, FakeLlm)
    assert len(agent.llm.requests) == 1


def test_a_preemptive_replys_tool_runs_once_after_the_turn(
    outcomes: dict[str, Outcome],
) -> None:
    report, results, _ = outcomes["preemptive-tool"]
    assert held_bookings == ["friday"]
    (result,) = results
    assert result.drafts["used"] == 1
    roles = [m.role for m in result.history.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert result.history.messages[-1].content == "Done: held friday."
    assert report.utterances[0].reply_start is not None


def test_the_turn_log_line_carries_the_transcript_with_digit_runs_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    card = "my card number is 4111 1111 1111 1111"
    agent = VoiceAgent(FakeStt([card]), FakeLlm(answer("Thank you, card noted.")), FakeTts())
    caplog.set_level(logging.INFO, logger="voxwire")
    report, results = asyncio.run(agent_call("twilio", CallPlan(speech("twilio")), agent))
    assert report.utterances[0].reply_start is not None, report.summary()
    (turn,) = results[0].turns
    assert turn.user_text == card  # the conversation keeps the text; the log does not
    lines = [r.getMessage() for r in caplog.records if "turn 0:" in r.getMessage()]
    assert len(lines) == 1
    assert 'caller="my card number is [digits]"' in lines[0]
    assert not any("4111" in r.getMessage() for r in caplog.records)
