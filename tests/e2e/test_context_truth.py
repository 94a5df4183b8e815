"""After a barge-in the history holds exactly the words the caller heard.

35 barge-ins at seeded random points, five on each WebSocket dialect with marks, each a
call of its own: the simulated phone asks a question, the voice agent (fake services)
answers at length, and the phone talks over the answer. The phone says which of the
audio it received had played when the clear came (``played_received_samples``); the
fake synthesiser's word timings say where each word of the answer starts in that audio.
The rule: **a word counts as heard once its audio has started playing.** The
assistant turn in the agent's history must be exactly those words, in every case.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server
from voxwire.aio import Call
from voxwire.protocols import protocol_names
from voxwire.services.base import ChatMessage
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts, speech_signal
from voxwire.sim import PROVIDERS, DialogReport, Turn, place_dialog, synthesize

WITH_MARKS = sorted(protocol_names(transport="websocket", supports_marks=True))
PER_PROTOCOL = 5
ANSWER = (
    "We are open from nine in the morning until five in the evening on weekdays. "
    "On Saturdays we open at ten and close at two. We are closed on Sundays, and on "
    "public holidays the clinic stays closed as well."
)
_WORD = re.compile(r"[\w'-]+")


def heard_words(tts: FakeTts, played: int, line_rate: int) -> list[str]:
    """The words of the answer whose audio had started playing by received sample
    ``played`` (the answer's audio is the first the phone receives)."""
    (request, *_) = tts.requests
    words: list[str] = []
    base = 0
    for text in request.texts:
        pcm, spans = speech_signal(text, tts.sample_rate, tts.words_per_second)
        for word, start, _ in spans:
            if (base + start) * line_rate / tts.sample_rate < played:
                words += _WORD.findall(word)
        base += len(pcm)
    return words


def reply(messages: Sequence[ChatMessage]) -> str:
    return ANSWER if len([m for m in messages if m.role == "user"]) == 1 else "Of course."


async def one_call(
    protocol: str, barge_after: float, ask: np.ndarray, barge: np.ndarray
) -> tuple[DialogReport, AgentCallResult, FakeTts]:
    tts = FakeTts()
    agent = VoiceAgent(FakeStt(["when are you open", "sorry one question"]), FakeLlm(reply), tts)
    results: list[AgentCallResult] = []

    def on_end(call: Call, result: AgentCallResult) -> None:
        results.append(result)

    agent.on_end = on_end
    async with agent_server(agent, protocol) as url:
        turns = [Turn(ask, "when are you open"), Turn(barge, "sorry", barge_in_after=barge_after)]
        report = await place_dialog(url, protocol, turns, quiet=0.8)
        for _ in range(150):
            if results:
                break
            await asyncio.sleep(0.02)
    return report, results[0], tts


@pytest.fixture(scope="module")
def cases() -> list[tuple[str, float, DialogReport, AgentCallResult, FakeTts]]:
    rng = random.Random(20261202)
    plan = [(p, rng.uniform(0.2, 5.0)) for p in WITH_MARKS for _ in range(PER_PROTOCOL)]
    speech: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for p in WITH_MARKS:
        rate = PROVIDERS[p].default_rate
        if rate not in speech:
            speech[rate] = (
                synthesize("When are you open?", rate),
                synthesize("Sorry, one question.", rate, seed=2),
            )

    async def main() -> list[tuple[DialogReport, AgentCallResult, FakeTts]]:
        # one protocol's call at a time each: the phones and the servers share this
        # process's event loop, and a saturated loop delays both sides' clocks alike
        out: list[tuple[DialogReport, AgentCallResult, FakeTts]] = []
        for i in range(0, len(plan), len(WITH_MARKS)):
            batch = plan[i : i + len(WITH_MARKS)]
            runs = [one_call(p, t, *speech[PROVIDERS[p].default_rate]) for p, t in batch]
            out += await asyncio.wait_for(asyncio.gather(*runs), 60)
        return out

    outcomes = asyncio.run(main())
    return [(p, t, *o) for (p, t), o in zip(plan, outcomes, strict=True)]


def test_every_barge_in_leaves_exactly_the_heard_words_in_the_history(
    cases: list[tuple[str, float, DialogReport, AgentCallResult, FakeTts]],
) -> None:
    assert len(cases) >= 30
    wrong = []
    for protocol, after, report, result, tts in cases:
        assert report.clears, f"{protocol} at {after:.2f} s: no clear\n{report.summary()}"
        assert result.turns[0].interrupted, f"{protocol} at {after:.2f} s"
        played = report.clears[0].played_received_samples
        truth = heard_words(tts, played, report.rate)
        messages = result.history.messages
        assert messages[0].role == "user"
        if messages[1].role == "assistant":
            kept = _WORD.findall(messages[1].content)
            assert messages[2].role == "user"
        else:
            kept = []
            assert messages[1].role == "user"
        if kept != truth:
            estimate = result.turns[0].heard_seconds
            wrong.append((protocol, round(after, 2), played, estimate, truth[-2:], kept[-2:]))
    assert wrong == [], f"{len(wrong)} of {len(cases)} barge-ins differ: {wrong}"


def test_the_barge_ins_cover_the_answer(
    cases: list[tuple[str, float, DialogReport, AgentCallResult, FakeTts]],
) -> None:
    """The points fall all over the answer: early, mid-sentence, between sentences."""
    counts = [
        len(heard_words(tts, r.clears[0].played_received_samples, r.rate))
        for *_, r, _, tts in cases
    ]
    assert min(counts) <= 2
    assert max(counts) >= 12
    assert len(set(counts)) >= 10
