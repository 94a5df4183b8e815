"""After a barge-in on RTP the history holds exactly the words the phone heard.

The RTP twin of ``test_context_truth.py``: 12 barge-ins at seeded random points, each a
call of its own to ``serve_rtp`` running the voice agent (fake services). The simulated
RTP phone (:func:`voxwire.sim.dialog.place_rtp_dialog`) asks a question, the agent
answers at length, and the phone talks over the answer. RTP has no clear: the agent
stops the answer by no longer sending, and the phone plays everything that arrived. The
phone says how much of the audio it received belonged to the cut answer, and so played
(``StopRecord.played_received_samples``); the fake synthesiser's word timings say where
each word of the answer starts in that audio. The rule: **a word counts as heard once
its audio has started playing.** The assistant turn in the agent's history must be
exactly those words, in every case.

With ``-s`` the test prints the barge-in stop latency (onset of the caller's speech to
the last sample of the answer played) and how far the agent's estimate of the played
audio was from what played.
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
from collections.abc import Sequence

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")

from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.aio.rtp_call import RtpCall, serve_rtp
from voxwire.aio.surface import CallSurface
from voxwire.services.base import ChatMessage
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts, speech_signal
from voxwire.sim import synthesize
from voxwire.sim.dialog import DialogReport, Turn, place_rtp_dialog

CALLS = 12
AT_ONCE = 6
RATE = 8000
ANSWER = (
    "We are open from nine in the morning until five in the evening on weekdays. "
    "On Saturdays we open at ten and close at two. We are closed on Sundays, and on "
    "public holidays the clinic stays closed as well."
)
_WORD = re.compile(r"[\w'-]+")

Case = tuple[float, DialogReport, AgentCallResult, FakeTts, int]


def word_starts(tts: FakeTts, line_rate: int) -> list[tuple[str, float]]:
    """Each word of the answer and where its audio starts, in received line samples (the
    answer's audio is the first the phone receives)."""
    (request, *_) = tts.requests
    out: list[tuple[str, float]] = []
    base = 0
    for text in request.texts:
        pcm, spans = speech_signal(text, tts.sample_rate, tts.words_per_second)
        for word, start, _ in spans:
            at = (base + start) * line_rate / tts.sample_rate
            out += [(w, at) for w in _WORD.findall(word)]
        base += len(pcm)
    return out


def heard_words(tts: FakeTts, played: int, line_rate: int) -> list[str]:
    """The words of the answer whose audio had started playing by received sample
    ``played``."""
    return [w for w, at in word_starts(tts, line_rate) if at < played]


def reply(messages: Sequence[ChatMessage]) -> str:
    return ANSWER if len([m for m in messages if m.role == "user"]) == 1 else "Of course."


async def one_call(barge_after: float, ask: np.ndarray, barge: np.ndarray) -> Case:
    tts = FakeTts()
    agent = VoiceAgent(FakeStt(["when are you open", "sorry one question"]), FakeLlm(reply), tts)
    results: list[AgentCallResult] = []
    sent: list[int] = []

    def on_end(call: CallSurface, result: AgentCallResult) -> None:
        results.append(result)
        assert isinstance(call, RtpCall)
        sent.append(call.stats.packets_sent)

    agent.on_end = on_end
    server = await serve_rtp(agent, pipeline_rate=agent.pipeline_rate, idle_timeout=0.5)
    try:
        host, port = server.local_addr
        turns = [Turn(ask, "when are you open"), Turn(barge, "sorry", barge_in_after=barge_after)]
        report = await place_rtp_dialog(host, port, turns, quiet=0.8)
        for _ in range(150):  # the call ends when the phone's packets stop (idle_timeout)
            if results:
                break
            await asyncio.sleep(0.02)
    finally:
        await server.aclose()
    assert results, "the agent's call did not end"
    return barge_after, report, results[0], tts, sent[0]


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    rng = random.Random(20261203)
    plan = [rng.uniform(0.2, 5.0) for _ in range(CALLS)]
    ask = synthesize("When are you open?", RATE)
    barge = synthesize("Sorry, one question.", RATE, seed=2)

    async def main() -> list[Case]:
        # a few calls at a time: the phones, the servers and the process's one pacer
        # share this event loop, and a saturated loop delays both sides' clocks alike
        out: list[Case] = []
        for i in range(0, len(plan), AT_ONCE):
            runs = [one_call(t, ask, barge) for t in plan[i : i + AT_ONCE]]
            out += await asyncio.wait_for(asyncio.gather(*runs), 60)
        return out

    return asyncio.run(main())


def _kept(result: AgentCallResult) -> list[str]:
    messages = result.history.messages
    assert messages[0].role == "user"
    if messages[1].role == "assistant":
        assert messages[2].role == "user"
        return _WORD.findall(messages[1].content)
    assert messages[1].role == "user"
    return []


def test_every_rtp_barge_in_leaves_exactly_the_heard_words_in_the_history(
    cases: list[Case],
) -> None:
    assert len(cases) >= 10
    wrong = []
    for after, report, result, tts, _ in cases:
        played = report.stops[0].played_received_samples
        truth = heard_words(tts, played, report.rate)
        kept = _kept(result)
        if kept != truth:
            estimate = result.turns[0].heard_seconds
            wrong.append((round(after, 2), played, estimate, truth[-2:], kept[-2:]))
    assert wrong == [], f"{len(wrong)} of {len(cases)} barge-ins differ: {wrong}"


def test_every_rtp_barge_in_cuts_the_history_at_most_two_frames_short(
    cases: list[Case],
) -> None:
    """What holds today: the history keeps the heard words, but for those whose audio
    started in the last two frames the phone played (sent before the agent stopped,
    after the agent's send clock)."""
    assert len(cases) >= 10
    lead = 2 * 160 + 40  # two frames (the RTP lead), and 5 ms for the resampler
    for after, report, result, tts, _ in cases:
        assert len(report.stops) == 1, f"at {after:.2f} s\n{report.summary()}"
        assert report.clears == []
        assert report.unexpected == []
        assert report.turns[0].cut, f"at {after:.2f} s\n{report.summary()}"
        assert result.turns[0].interrupted, f"at {after:.2f} s\n{report.summary()}"
        played = report.stops[0].played_received_samples
        starts = word_starts(tts, report.rate)
        truth = [w for w, at in starts if at < played]
        kept = _kept(result)
        assert kept == truth[: len(kept)], f"at {after:.2f} s: {kept[-3:]} vs {truth[-3:]}"
        missed = starts[len(kept) : len(truth)]
        assert all(at >= played - lead for _, at in missed), (after, played, missed)


def test_rtp_barge_in_stop_latency_and_the_agents_estimate(cases: list[Case]) -> None:
    """The figures, printed (-s); the bounds are loose sanity checks, not goals."""
    latencies = sorted(r.stops[0].latency for _, r, *_ in cases)
    errors = sorted(
        (res.turns[0].heard_seconds or 0.0) - r.stops[0].played_received_samples / r.rate
        for _, r, res, *_ in cases
    )
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(
        f"\nRTP barge-in stop latency over {len(cases)} calls (speech onset -> last reply "
        f"sample played): p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    print(
        "agent's heard estimate - audio the phone played (ms): "
        + ", ".join(f"{e * 1000:+.0f}" for e in errors)
    )
    assert all(0 < t < 3.0 for t in latencies)
    # every packet the agent sent arrived (loopback) and is in the phone's numbering
    for _, report, _, _, packets in cases:
        assert report.received_samples == packets * 160


def test_the_rtp_barge_ins_cover_the_answer(cases: list[Case]) -> None:
    """The points fall all over the answer: early, mid-sentence, between sentences."""
    counts = [
        len(heard_words(tts, r.stops[0].played_received_samples, r.rate))
        for _, r, _, tts, _ in cases
    ]
    assert min(counts) <= 3
    assert max(counts) >= 12
    assert len(set(counts)) >= 6
