"""The voice agent with a store, in process over loopback sockets: a call whose id is in
the store resumes its history, every ended turn (a barge-in's cut one too) and tool
result is saved, a hang-up forgets the call, and a store that fails never fails the
call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from tests.store.conftest import free_port
from tests.store.resume_agent import remember
from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server
from voxwire.aio.surface import CallSurface
from voxwire.services.base import ChatMessage, ToolCall
from voxwire.services.fake import FakeLlm, FakeReply, FakeStt, FakeTts
from voxwire.sim import DialogReport, Turn, place_dialog, synthesize
from voxwire.store import SqliteStore, StoredConversation
from voxwire.voice.conversation import VoiceConfig
from voxwire.voice.history import History
from voxwire.voice.tools import tool

CALL = "7d3c2a10-0000-4000-8000-000000000001"


def said(text: str, seed: int = 1) -> np.ndarray:
    return synthesize(text, 8000, seed=seed)


class Recording(SqliteStore):
    """A SQLite store that also keeps every conversation it was given, in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.saved: list[StoredConversation] = []

    async def save(self, key: str, conversation: StoredConversation) -> None:
        self.saved.append(conversation)
        await super().save(key, conversation)


async def call(
    agent: VoiceAgent, turns: Sequence[Turn], call_id: str = CALL
) -> tuple[DialogReport, AgentCallResult]:
    results: list[AgentCallResult] = []

    def on_end(surface: CallSurface, result: AgentCallResult) -> None:
        results.append(result)

    agent.on_end = on_end
    async with agent_server(agent, "twilio") as url:
        report = await asyncio.wait_for(place_dialog(url, "twilio", turns, call_id=call_id), 30)
        for _ in range(200):
            if results:
                break
            await asyncio.sleep(0.02)
    (result,) = results
    return report, result


def key_of(call_id: str) -> str:
    return "twilio:CA" + call_id.replace("-", "")


def test_a_known_call_resumes_its_history_and_a_hang_up_forgets_it(tmp_path: Path) -> None:
    async def main() -> None:
        store = Recording(tmp_path / "state.db")
        history = History("ignored: the agent's own prompt wins")
        history.add_user("my name is ada")
        history.add_assistant("Nice to meet you, Ada.")
        await store.save(key_of(CALL), StoredConversation(history, turns=1, protocol="twilio"))
        store.saved.clear()
        agent = VoiceAgent(
            FakeStt(["what is my name"]),
            FakeLlm(remember, first_token=0.05),
            FakeTts(),
            system_prompt="Remember.",
            store=store,
            config=VoiceConfig(greeting="Hello!", resume_greeting=""),
        )
        report, result = await call(agent, [Turn(said("what is my name"), "what is my name")])
        assert result.resumed
        assert result.connection == 2
        assert result.ended_by == "caller_hung_up"
        assert [(m.role, m.content) for m in result.history.messages] == [
            ("user", "my name is ada"),
            ("assistant", "Nice to meet you, Ada."),
            ("user", "what is my name"),
            ("assistant", "Your name is Ada."),
        ]
        assert isinstance(agent.llm, FakeLlm)
        first = agent.llm.requests[0].messages
        assert first[0] == ChatMessage("system", "Remember.")
        (turn,) = result.turns  # no greeting on a resumed call
        assert turn.heard_text == "Your name is Ada."
        assert report.turns[0].reply_latency is not None, report.summary()
        # saved after the turn (3rd stored turn overall), forgotten after the hang-up
        assert store.saved[-1].turns == 2
        assert store.saved[-1].connections == 2
        assert await store.load(key_of(CALL)) is None
        # a call with another id starts from nothing
        other = "7d3c2a10-0000-4000-8000-000000000002"
        agent.llm = FakeLlm(remember, first_token=0.05)
        agent.stt = FakeStt(["what is my name"])
        _, fresh = await call(agent, [Turn(said("what is my name"))], call_id=other)
        assert not fresh.resumed
        assert fresh.history.messages[-1].content == "I do not know your name."
        await store.aclose()

    asyncio.run(main())


LONG = (
    "We are open from nine in the morning until five in the evening on weekdays, "
    "and from ten until two on Saturdays, and we are closed on Sundays and holidays."
)


def test_a_barge_in_saves_the_cut_reply(tmp_path: Path) -> None:
    async def main() -> None:
        store = Recording(tmp_path / "state.db")
        agent = VoiceAgent(
            FakeStt(["when are you open", "sorry to interrupt"]),
            FakeLlm(lambda m: LONG if len(m) < 3 else "Go on."),
            FakeTts(),
            store=store,
        )
        turns = [
            Turn(said("when are you open"), "ask"),
            Turn(said("sorry to interrupt", 2), "barge", barge_in_after=1.0),
        ]
        _, result = await call(agent, turns)
        assert result.turns[0].interrupted
        cut = [
            s
            for s in store.saved
            if len(s.history.messages) >= 2 and s.history.messages[1].role == "assistant"
        ]
        assert cut, [s.history.to_dict() for s in store.saved]
        heard = cut[0].history.messages[1].content
        assert heard
        assert LONG.startswith(heard)
        assert len(heard) < len(LONG)  # what the caller heard, not the whole reply
        await store.aclose()

    asyncio.run(main())


ran: list[str] = []


@tool
def book(day: str) -> str:
    """Book an appointment.

    Parameters
    ----------
    day : str
        The day.
    """
    ran.append(day)
    return f"booked {day}, id 7"


def booking(messages: Sequence[ChatMessage]) -> FakeReply:
    if messages[-1].role == "tool":
        return FakeReply(f"Done: {messages[-1].content}.")
    return FakeReply("", [ToolCall("call_1", "book", {"day": "monday"})])


def test_a_tool_result_is_saved_as_soon_as_it_is_in(tmp_path: Path) -> None:
    async def main() -> None:
        store = Recording(tmp_path / "state.db")
        agent = VoiceAgent(
            FakeStt(["book monday"]), FakeLlm(booking), FakeTts(), tools=[book], store=store
        )
        await call(agent, [Turn(said("book monday"))])
        first = store.saved[0].history.messages
        assert [m.role for m in first] == ["user", "assistant", "tool"]
        assert first[2].content == "booked monday, id 7"
        assert ran == ["monday"]
        await store.aclose()

    asyncio.run(main())


def test_a_store_that_fails_never_fails_the_call() -> None:
    pytest.importorskip("redis", reason="the Redis store needs the redis package")
    from voxwire.store.redis_store import RedisStore

    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
        agent = VoiceAgent(FakeStt(["what is my name"]), FakeLlm(remember), FakeTts(), store=store)
        report, result = await call(agent, [Turn(said("what is my name"))])
        assert report.turns[0].reply_latency is not None, report.summary()
        assert result.history.messages[-1].content == "I do not know your name."
        assert store.counts["load_failed"] == 1
        assert store.counts["save_failed"] >= 1
        await store.aclose()

    asyncio.run(main())


def test_a_tool_call_left_without_its_result_is_answered_on_resume(tmp_path: Path) -> None:
    from voxwire.agents.pipeline import INTERRUPTED_TOOL

    async def main() -> None:
        store = Recording(tmp_path / "state.db")
        history = History()
        history.add_user("book monday and tuesday")
        history.add_assistant(
            "",
            [ToolCall("c1", "book", {"day": "monday"}), ToolCall("c2", "book", {"day": "tuesday"})],
        )
        history.add_tool_result("c1", "book", "booked monday, id 7")
        # the worker died before c2 returned
        await store.save(key_of(CALL), StoredConversation(history, turns=0))
        seen: list[list[ChatMessage]] = []

        def reply(messages: Sequence[ChatMessage]) -> str:
            seen.append(list(messages))
            return "Monday is booked; I could not confirm Tuesday."

        agent = VoiceAgent(FakeStt(["did it work"]), FakeLlm(reply), FakeTts(), store=store)
        _, result = await call(agent, [Turn(said("did it work"))])
        assert result.resumed
        roles = [(m.role, m.tool_call_id) for m in seen[0]]
        assert roles == [
            ("user", ""),
            ("assistant", ""),
            ("tool", "c1"),
            ("tool", "c2"),
            ("user", ""),
        ]
        assert seen[0][3].content == INTERRUPTED_TOOL
        assert seen[0][3].name == "book"
        await store.aclose()

    asyncio.run(main())
