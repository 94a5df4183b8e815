"""The turn-taking benchmark scores what it says: cut-offs and end-of-turn delays on turns
whose answer is known, and a corpus whose truth matches its audio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from voxwire.voice.turns import TurnPolicy

RATE = 16000


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "turn_taking.py"
    spec = importlib.util.spec_from_file_location("turn_taking_bench", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load()


def _voiced(seconds: float, seed: int) -> npt.NDArray[np.int16]:
    """A vowel-like sound: harmonics of 140 Hz, slowly modulated."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * 140 * k * t + seed * k) / k for k in range(1, 20))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) * np.hanning(len(t)) ** 0.1
    pcm: npt.NDArray[np.int16] = np.round(8000 * x / np.abs(x).max()).astype(np.int16)
    return pcm


def _turn(pause: float) -> Any:
    """Two phrases, ``pause`` seconds apart: "I need eggs," | "and milk."."""
    a, b = _voiced(0.8, 1), _voiced(0.6, 2)
    words = [[("I", 0.2), ("need", 0.5), ("eggs,", 0.8)], [("and", 0.25), ("milk.", 0.6)]]
    return bench._assemble("I need eggs, | and milk.", "test", [a, b], words, [pause], 7)


class _ByText:
    """Waits long after a comma, not at all after a full stop."""

    hangover_ms = 200

    def delay(self, text: str) -> float:
        return 0.9 if text.endswith(",") else 0.0


def test_turn_truth_is_where_the_audio_is() -> None:
    turn = _turn(0.7)
    lead = bench.LEAD_S
    assert turn.phrases[0][0] == pytest.approx(lead, abs=0.011)
    assert turn.phrases[1][0] == pytest.approx(lead + 0.8 + 0.7, abs=0.011)
    assert turn.end == pytest.approx(lead + 0.8 + 0.7 + 0.6, abs=0.011)
    assert turn.pauses == 1
    assert len(turn.audio) % (RATE // 50) == 0
    assert len(turn.audio) / RATE > turn.end + bench.TAIL_S - 0.05


def test_transcript_is_the_words_ended_so_far() -> None:
    turn = _turn(0.7)
    lead = bench.LEAD_S
    assert bench.transcript(turn, lead + 0.1, punctuated=True) == ""
    assert bench.transcript(turn, lead + 0.85, punctuated=True) == "I need eggs,"
    assert bench.transcript(turn, lead + 0.85, punctuated=False) == "i need eggs"
    assert bench.transcript(turn, 99.0, punctuated=True) == "I need eggs, and milk."


def test_short_silence_cuts_the_caller_off_long_silence_waits() -> None:
    turn = _turn(0.7)
    short = bench.score_turn(turn, bench.FixedSilence(0.2))
    assert short.cut_offs == 1  # the 700 ms pause is longer than 200 ms
    assert short.delay == pytest.approx(0.2, abs=0.06)
    long = bench.score_turn(turn, bench.FixedSilence(1.0))
    assert long.cut_offs == 0
    assert long.delay == pytest.approx(1.0, abs=0.06)


def test_the_text_decides_the_wait() -> None:
    turn = _turn(0.7)
    result = bench.score_turn(turn, _ByText())
    assert result.cut_offs == 0  # "I need eggs," waits 200 + 900 ms: longer than the pause
    assert result.delay == pytest.approx(0.2, abs=0.06)  # "... and milk." does not wait
    plain = bench.score_turn(turn, _ByText(), punctuated=False)
    assert plain.cut_offs == 1  # without the comma it does not wait


def test_score_counts_turns_pauses_and_delays() -> None:
    turns = [_turn(0.4), _turn(1.0)]
    s = bench.score(turns, bench.FixedSilence(0.55))
    assert (s.turns, s.pauses, s.cut_turns, s.cut_offs) == (2, 2, 1, 1)
    assert s.cut_rate == 0.5
    assert len(s.delays) == 2
    assert s.median == pytest.approx(0.55, abs=0.06)
    rows = bench.table(turns, TurnPolicy())
    assert [r[0].split(" ")[0] for r in rows] == ["voxwire"] * 3 + ["VAD"] * 3
    assert rows[4][1] == "50.0% (1/2)"


def test_corpus_is_seeded_and_timed_from_its_audio() -> None:
    calls: list[str] = []

    def synth(text: str, voice: str, wpm: int, pitch: int, seed: int) -> npt.NDArray[np.int16]:
        calls.append(text)
        return _voiced(0.08 * len(text.split()) + 0.1, seed % 7)

    split = bench.Split("t", ("One two, | three four.", "Five."), ("en",), ("m1",), 5)
    a = bench.build(split, 3, synth=synth)
    b = bench.build(split, 3, synth=synth)
    assert [t.script for t in a] == ["One two, | three four.", "Five.", "One two, | three four."]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b, strict=True))
    first = a[0]
    assert [w for w, _ in first.words] == ["One", "two,", "three", "four."]
    ends = [t for _, t in first.words]
    assert ends == sorted(ends)
    assert ends[1] == pytest.approx(first.phrases[0][1], abs=1e-9)  # a phrase's last word
    assert ends[-1] == pytest.approx(first.end, abs=1e-9)
    low, high = bench.PAUSE_S
    gap = first.phrases[1][0] - first.phrases[0][1]
    assert low - 0.05 <= gap <= high + 0.05
    # prefixes are synthesized without their final punctuation
    assert "One" in calls


def test_tune_puts_the_fastest_setting_within_the_cut_off_limit_first() -> None:
    turns = [_turn(0.7)]
    rows = bench.tune(turns, min_delays=(0.0,), max_delays=(0.3, 1.0, 2.0), hangovers=(200,))
    assert [p.max_delay for p, _ in rows] == [1.0, 2.0, 0.3]  # 0.3 s cuts "I need eggs," off
    assert rows[0][1].cut_turns == 0
    assert rows[-1][1].cut_turns == 1


def test_corpus_from_espeak() -> None:
    pytest.importorskip("espeakng_loader")
    turns = bench.build(bench.TUNE, 2)
    assert [t.script for t in turns] == list(bench.TUNE.scripts[:2])
    for turn in turns:
        ends = [t for _, t in turn.words]
        assert ends == sorted(ends)
        assert ends[-1] == pytest.approx(turn.end)
        assert turn.pauses == turn.script.count("|")
        result = bench.score_turn(turn, bench.FixedSilence(2.0))
        assert result.cut_offs == 0  # no inserted pause is 2 s long
        assert result.delay is not None


class _Waits:
    """0.4 s after every speech end: in the preemptive range."""

    hangover_ms = 200

    def delay(self, text: str) -> float:
        return 0.4


def test_preemptive_drafts_are_counted_thrown_away_or_answering() -> None:
    # a 1.0 s pause outlasts 200 + 400 ms: the agent cuts in (the policy's fault), and the
    # draft behind that start is neither thrown away nor an answer
    cut = bench.score_turn(_turn(1.0), _Waits())
    assert cut.cut_offs == 1
    assert (cut.drafts, cut.wasted, cut.answered_by_draft) == (2, 0, True)
    assert cut.hidden == pytest.approx(0.4)
    # a 0.4 s pause: the caller goes on inside the wait, the first draft is thrown away
    kept = bench.score_turn(_turn(0.4), _Waits())
    assert kept.cut_offs == 0
    assert (kept.drafts, kept.wasted, kept.answered_by_draft) == (2, 1, True)
    # waits outside the range start no draft
    none = bench.score_turn(_turn(0.4), bench.FixedSilence(1.0))
    assert (none.drafts, none.wasted, none.answered_by_draft) == (0, 0, False)
    rows = bench.preemptive_table([_turn(0.4)], TurnPolicy())
    assert [r[0] for r in rows] == [
        "punctuated text",
        "plain lowercase text + prosody",
        "plain lowercase text alone",
    ]


def _glide(seconds: float, start_hz: float, end_hz: float) -> npt.NDArray[np.int16]:
    """A voiced sound gliding from ``start_hz`` to ``end_hz`` over its last 0.2 s."""
    n, tail = round(seconds * RATE), round(0.2 * RATE)
    f0 = np.concatenate([np.full(n - tail, start_hz), np.geomspace(start_hz, end_hz, tail)])
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    pcm: npt.NDArray[np.int16] = np.round(8000 * x / np.abs(x).max()).astype(np.int16)
    return pcm


def _sung_turn(pause: float, first_end_hz: float) -> Any:
    """ "I need eggs," said ending at ``first_end_hz`` (from 140 Hz), ``pause`` s, then
    "and milk." falling to 100 Hz."""
    a, b = _glide(0.8, 140.0, first_end_hz), _glide(0.6, 140.0, 100.0)
    words = [[("I", 0.2), ("need", 0.5), ("eggs,", 0.8)], [("and", 0.25), ("milk.", 0.6)]]
    return bench._assemble("I need eggs, | and milk.", "test", [a, b], words, [pause], 7)


def test_prosody_waits_through_a_rising_pause_and_answers_a_fall() -> None:
    policy = TurnPolicy()
    rising = _sung_turn(0.8, 190.0)
    # plain text alone: "i need eggs" could be the whole turn, the 800 ms pause cuts in
    alone = bench.score_turn(rising, policy, punctuated=False)
    assert alone.cut_offs == 1
    # the rise at "eggs" says more is coming; "and milk" falls and is answered at once
    heard = bench.score_turn(rising, policy, punctuated=False, prosodic=True)
    assert heard.cut_offs == 0
    assert heard.delay is not None
    assert heard.delay < 0.4
    # a fall at "eggs" sounds finished: the agent starts inside the pause
    falling = bench.score_turn(_sung_turn(0.8, 100.0), policy, punctuated=False, prosodic=True)
    assert falling.cut_offs == 1
    # prosody is only read where the text could end: punctuated text ignores it
    punctuated = bench.score_turn(_sung_turn(0.8, 100.0), policy, prosodic=True)
    assert punctuated.cut_offs == 0


def test_small_espeak_corpus_cuts_off_far_less_than_plain_vad() -> None:
    """Eight held-out turns (one voice, speed and pitch per turn from the split's seed):
    voxwire with plain lowercase text and prosody cuts off at most half as many turns as
    550 ms of silence, and with punctuated text at most one."""
    pytest.importorskip("espeakng_loader")
    turns = bench.build(bench.HELD_OUT, 8)
    policy = TurnPolicy()
    vad_200 = bench.score(turns, bench.FixedSilence(0.2))
    vad_550 = bench.score(turns, bench.FixedSilence(0.55))
    plain = bench.score(turns, policy, punctuated=False, prosodic=True)
    punctuated = bench.score(turns, policy)
    assert vad_200.cut_turns >= 6
    assert vad_550.cut_turns >= 5
    assert plain.cut_turns <= vad_550.cut_turns // 2
    assert punctuated.cut_turns <= 1
    assert len(plain.delays) == len(turns)
