"""The echo agent, sans-I/O: espeak-ng speech fed frame by frame on a virtual clock."""

from __future__ import annotations

import numpy as np
import pytest

from voxwire.agents import Clear, EchoAgent, Mark, Play
from voxwire.sim.caller import aligned_correlation
from voxwire.vad import Vad

pytest.importorskip("espeakng_loader", reason="espeak-ng speech needs espeakng-loader")

from voxwire.sim.speech import speech_bounds, synthesize

RATE = 16000
FRAME = RATE // 50


@pytest.fixture(scope="module")
def phrase() -> np.ndarray:
    return synthesize("Testing the voxwire echo line.", RATE)


@pytest.fixture(scope="module")
def other() -> np.ndarray:
    return synthesize("Sorry to interrupt you there.", RATE, seed=2)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def feed(agent: EchoAgent, pcm: np.ndarray) -> list[tuple[int, object]]:
    """Feed 20 ms chunks; return (position after the chunk, action) for every action."""
    out: list[tuple[int, object]] = []
    for i in range(0, len(pcm), FRAME):
        out.extend((agent.position, action) for action in agent.feed(pcm[i : i + FRAME]))
    return out


def test_an_utterance_is_played_back_after_it_ends(phrase: np.ndarray) -> None:
    agent = EchoAgent(RATE)
    audio = np.concatenate([silence(0.5), phrase, silence(1.0)])
    actions = feed(agent, audio)
    assert [type(a) for _, a in actions] == [Play, Mark]
    at, play = actions[0]
    assert isinstance(play, Play)
    assert play.sample_rate == RATE
    # the reply is decided after the speech ends and within the VAD's 200 ms hangover
    # (plus two frames of decision granularity)
    _, end = speech_bounds(phrase, RATE)
    speech_end = len(silence(0.5)) + end
    assert speech_end <= at <= speech_end + round(0.2 * RATE) + 2 * FRAME
    # it holds the whole utterance, sample for sample, with the pre-roll before it
    value, lag = aligned_correlation(phrase, play.pcm)
    assert value > 0.9999
    assert lag == pytest.approx(0.1 * RATE, abs=FRAME)
    assert actions[1][1] == Mark("reply-1")
    assert agent.speaking == "reply-1"
    assert agent.stats.utterances == 1


def test_talking_over_the_reply_clears_it_at_once(phrase: np.ndarray, other: np.ndarray) -> None:
    agent = EchoAgent(RATE)
    feed(agent, np.concatenate([silence(0.5), phrase, silence(0.5)]))
    assert agent.speaking == "reply-1"
    onset, _ = speech_bounds(other, RATE)
    start = agent.position
    actions = feed(agent, np.concatenate([other, silence(0.6)]))
    kinds = [type(a) for _, a in actions]
    assert kinds == [Clear, Play, Mark]
    cleared_at = actions[0][0] - start
    # the clear comes with the first frames of speech: within two 20 ms frames of onset
    assert onset <= cleared_at <= onset + 2 * FRAME + FRAME
    assert agent.stats.barge_ins == 1
    value, _ = aligned_correlation(other, actions[1][1].pcm)  # type: ignore[union-attr]
    assert value > 0.9999
    assert actions[2][1] == Mark("reply-2")


def test_no_clear_once_the_reply_has_played(phrase: np.ndarray, other: np.ndarray) -> None:
    agent = EchoAgent(RATE)
    feed(agent, np.concatenate([silence(0.5), phrase, silence(0.5)]))
    agent.mark_played("reply-1")
    assert agent.speaking is None
    assert agent.stats.replies_played == 1
    actions = feed(agent, np.concatenate([other, silence(0.6)]))
    assert [type(a) for _, a in actions] == [Play, Mark]
    assert agent.stats.barge_ins == 0


def test_a_cleared_or_foreign_mark(phrase: np.ndarray) -> None:
    agent = EchoAgent(RATE)
    feed(agent, np.concatenate([silence(0.5), phrase, silence(0.5)]))
    agent.mark_played("something-else")
    assert agent.speaking == "reply-1"
    agent.mark_played("reply-1", cleared=True)
    assert agent.speaking is None
    assert agent.stats.replies_played == 0


def test_memory_is_bounded_and_long_turns_are_cut(phrase: np.ndarray) -> None:
    agent = EchoAgent(RATE, max_utterance=1.0)
    feed(agent, silence(5.0))
    assert agent._held <= agent.pre_roll + 2 * FRAME + FRAME  # only the pre-roll is kept
    # three phrases back to back, no pause long enough to end the turn
    long_turn = np.concatenate([phrase, phrase, phrase, silence(0.6)])
    actions = feed(agent, long_turn)
    play = actions[0][1]
    assert isinstance(play, Play)
    assert len(play.pcm) <= round(1.0 * RATE) + agent.pre_roll + 2 * FRAME


def test_chunking_does_not_matter(phrase: np.ndarray) -> None:
    audio = np.concatenate([silence(0.5), phrase, silence(0.6)])
    whole = EchoAgent(RATE)
    a = whole.feed(audio)
    odd = EchoAgent(RATE)
    b = [x for i in range(0, len(audio), 137) for x in odd.feed(audio[i : i + 137])]
    assert [type(x) for x in a] == [type(x) for x in b] == [Play, Mark]
    np.testing.assert_array_equal(a[0].pcm, b[0].pcm)  # type: ignore[union-attr]


def test_a_reused_input_buffer_does_not_change_the_reply(phrase: np.ndarray) -> None:
    agent = EchoAgent(RATE)
    audio = np.concatenate([silence(0.5), phrase, silence(0.6)])
    buffer = np.empty(FRAME, np.int16)
    replies = []
    for i in range(0, len(audio) - FRAME + 1, FRAME):
        buffer[:] = audio[i : i + FRAME]
        replies += [a for a in agent.feed(buffer) if isinstance(a, Play)]
    (reply,) = replies
    assert aligned_correlation(phrase, reply.pcm)[0] > 0.9999


def test_bad_input() -> None:
    agent = EchoAgent(RATE)
    with pytest.raises(TypeError, match="int16"):
        agent.feed(np.zeros(320, np.float32))  # type: ignore[arg-type]
    assert agent.feed(np.zeros(0, np.int16)) == []
    vad = Vad(8000)
    with pytest.raises(ValueError, match="VAD runs at 8000"):
        EchoAgent(RATE, vad=vad)
    with pytest.raises(ValueError, match="pre_roll"):
        EchoAgent(RATE, pre_roll=-1)
