"""TurnPolicy: the completeness of a transcript and the delay it gives."""

from __future__ import annotations

import doctest
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import voxwire.voice.turns
from voxwire.voice.turns import Prosody, TurnPolicy, prosody

POLICY = TurnPolicy(min_delay=0.1, max_delay=1.1, hangover_ms=200)


def test_docstring_examples() -> None:
    result = doctest.testmod(voxwire.voice.turns)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    "text",
    [
        "Can you move my appointment to Friday?",
        "That's great!",
        "can you move my appointment to friday?",
        "I'd like to cancel my subscription.",
        "It was last Tuesday.",
        "No, I don't think so.",
    ],
)
def test_complete_sentences_wait_little(text: str) -> None:
    assert POLICY.completeness(text) >= 0.9
    assert POLICY.delay(text) <= 0.2


def test_question_gives_min_delay_exactly() -> None:
    assert POLICY.delay("Is it open?") == POLICY.min_delay
    assert POLICY.silence("Is it open?") == pytest.approx(0.2 + 0.1)


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book a table for",
        "i'd like to book a table for",
        "and",
        "so i went there and",
        "I paid but",
        "because",
        "um",
        "I think it was, uh",
        "give it to the",
        "it goes to",
        "send it to my",
        "the address is",
        "my number is five five five",
        "my number is 555",
        "My number is five five five, one two three,",
        "I need eggs, milk,",
        "I went to the store and then",
        "it costs twelve point",
        "let me see...",
        "I want",
        "I'd like",
        "what I need is",
        "when I",
        "it's",
        "so first",
        "can you tell me",
        "the one on the left, the one on the right;",
    ],
)
def test_text_that_goes_on_waits_long(text: str) -> None:
    assert POLICY.completeness(text) <= 0.2
    assert POLICY.delay(text) >= 0.9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", 0.95),
        ("no thanks", 0.95),
        ("thank you", 0.95),
        ("okay", 0.95),
        ("yes it is", 0.6),
        ("i think so", 0.8),
        ("i went to the pharmacy", 0.7),  # no punctuation anywhere: a plain recognizer
        ("I went to the pharmacy", 0.25),  # a punctuating one that has put no full stop
        ("table for four", 0.5),
        ("", 0.5),
        ("   ", 0.5),
        ("!!!", 0.5),  # no words: as good as no transcript
        ("--", 0.05),
        ("The.", 0.15),
        ("Um.", 0.1),
        ('He said "stop."', 0.9),
    ],
)
def test_scores(text: str, expected: float) -> None:
    assert POLICY.completeness(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("my number is five five five one two three four five six seven", True),  # 10
        ("my number is five five five one two three", False),  # 6
        ("the card is 4111 1111 1111 1111", True),  # 16
        ("the card is 4111 1111", False),
        ("it's double five seven", False),
        ("my pin is five five five five five five five", True),  # 7
    ],
)
def test_digits_read_out(text: str, complete: bool) -> None:
    score = POLICY.completeness(text)
    assert (score >= 0.7) is complete


def test_punctuation_outweighs_the_word_except_for_words_that_cannot_end() -> None:
    assert POLICY.completeness("My number is five five five.") == 0.9
    assert POLICY.completeness("My number is five five five,") == 0.05
    assert POLICY.completeness("I went to the.") < 0.2


def test_only_the_end_of_a_long_text_matters() -> None:
    long_text = "word " * 10_000 + "and"
    assert POLICY.completeness(long_text) == POLICY.completeness("and")


@given(st.text(max_size=300))
def test_any_text_gives_a_score_and_a_delay_in_range(text: str) -> None:
    score = POLICY.completeness(text)
    assert 0.0 <= score <= 1.0
    delay = POLICY.delay(text)
    assert POLICY.min_delay <= delay <= POLICY.max_delay + 1e-12
    assert math.isclose(POLICY.silence(text), 0.2 + delay)


def test_defaults_and_repr() -> None:
    policy = TurnPolicy()
    assert 0.0 <= policy.min_delay <= policy.max_delay
    assert 0 <= policy.hangover_ms <= 500
    assert repr(policy).startswith("TurnPolicy(min_delay=")
    assert TurnPolicy(0.2, 0.2).delay("and") == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_delay": -0.1}, ValueError, r"min_delay must be in \[0, 5\], got -0.1"),
        ({"min_delay": math.nan}, ValueError, "min_delay must be in .*, got nan"),
        ({"max_delay": math.inf}, ValueError, "max_delay must be in .*, got inf"),
        (
            {"min_delay": 0.5, "max_delay": 0.4},
            ValueError,
            r"max_delay must be >= min_delay \(0.5\), got 0.4",
        ),
        ({"hangover_ms": 600}, ValueError, r"hangover_ms must be in \[0, 500\], got 600"),
        ({"hangover_ms": -20}, ValueError, "hangover_ms must be in .*, got -20"),
        ({"hangover_ms": 200.0}, TypeError, "hangover_ms must be an int, got float"),
        ({"min_delay": "0.1"}, TypeError, "min_delay must be a number, got str"),
        ({"max_delay": True}, TypeError, "max_delay must be a number, got bool"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TurnPolicy(**kwargs)  # type: ignore[arg-type]


def test_text_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        POLICY.delay(b"and")  # type: ignore[arg-type]


def test_a_lone_opener_waits() -> None:
    assert POLICY.completeness("well") == 0.15
    assert POLICY.completeness("very well") == 0.7


# --- prosody ---------------------------------------------------------------------------------


def _glide(
    seconds: float, start_hz: float, end_hz: float, rate: int = 16000, level: float = 8000.0
) -> npt.NDArray[np.int16]:
    """A voiced sound whose pitch glides from ``start_hz`` to ``end_hz`` (harmonics of a
    pulse train), as the last syllables of a statement (falling) or a list item (rising)."""
    n = round(seconds * rate)
    f0 = np.geomspace(start_hz, end_hz, n)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    pcm: npt.NDArray[np.int16] = np.round(level * x / np.abs(x).max()).astype(np.int16)
    return pcm


def _voice(end_hz: float, rate: int = 16000) -> npt.NDArray[np.int16]:
    """0.3 s level at 140 Hz, then 0.2 s gliding to ``end_hz``."""
    level = _glide(0.3, 140.0, 140.0, rate)
    return np.concatenate([level, _glide(0.2, 140.0, end_hz, rate)])


def test_prosody_hears_a_fall_a_rise_and_a_level_end() -> None:
    fall = prosody(_voice(100.0), 16000)
    rise = prosody(_voice(190.0), 16000)
    level = prosody(_voice(140.0), 16000)
    assert fall.known
    assert rise.known
    assert level.known
    assert fall.final_pitch < -3.0  # 140 -> 100 Hz is 5.8 semitones down
    assert rise.final_pitch > 3.0
    assert abs(level.final_pitch) < 0.5
    assert fall.voiced > 0.8


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_prosody_at_every_rate(rate: int) -> None:
    assert prosody(_voice(100.0, rate), rate).final_pitch < -3.0
    assert prosody(_voice(190.0, rate), rate).final_pitch > 3.0


def test_prosody_reads_only_the_end() -> None:
    rising_then_falling = np.concatenate([_voice(190.0), _voice(100.0)])
    assert prosody(rising_then_falling, 16000).final_pitch < -3.0


def test_prosody_of_noise_silence_and_too_little_audio_is_unknown() -> None:
    rng = np.random.default_rng(3)
    noise = np.round(rng.standard_normal(8000) * 3000).astype(np.int16)
    assert not prosody(noise, 16000).known
    assert not prosody(np.zeros(8000, dtype=np.int16), 16000).known
    assert not prosody(_voice(100.0)[:400], 16000).known
    assert not prosody(np.zeros(0, dtype=np.int16), 16000).known
    # voiced early, then a long unvoiced stretch: the end itself tells nothing
    tail = np.round(rng.standard_normal(4000) * 300).astype(np.int16)
    assert not prosody(np.concatenate([_voice(100.0), tail]), 16000).known


@pytest.mark.parametrize(
    ("pcm", "rate", "error", "match"),
    [
        (np.zeros(8000, dtype=np.float32), 16000, TypeError, "int16 numpy array"),
        (b"\x00" * 100, 16000, TypeError, "int16 numpy array"),
        (np.zeros((2, 4000), dtype=np.int16), 16000, ValueError, "1-D, got 2"),
        (np.zeros(8000, dtype=np.int16), 44100, ValueError, "got 44100"),
        (np.zeros(8000, dtype=np.int16), 4000, ValueError, "got 4000"),
        (np.zeros(8000, dtype=np.int16), 16000.0, TypeError, "rate must be an int"),
    ],
)
def test_prosody_bad_input(pcm: object, rate: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        prosody(pcm, rate)  # type: ignore[arg-type]


FALLING = Prosody(-2.0, 0.9)
RISING = Prosody(0.8, 0.9)
HALF = Prosody(-1.0, 0.9)  # halfway between a sure rise (-0.5) and a sure fall (-1.5)
UNKNOWN = Prosody(math.nan, 0.1)


@pytest.mark.parametrize(
    ("text", "falling", "rising"),
    [
        ("i went to the pharmacy", 0.85, 0.05),  # a clause that could end
        ("yes", 0.95, 0.05),  # a closing keeps its own score when it falls
        ("i think so", 0.85, 0.05),
        ("and", 0.05, 0.05),  # the words say it goes on: the voice does not matter
        ("um", 0.0, 0.0),
        ("i'd like", 0.2, 0.2),
        ("send it to the", 0.05, 0.05),
        ("can you tell me when the pharmacy closes today", 0.85, 0.85),  # a question
        ("and also um where is my nearest branch", 0.85, 0.85),
        ("what time do you close tonight", 0.85, 0.85),
        ("could i get a large pizza with mushrooms", 0.85, 0.85),
        ("i could get a large pizza", 0.85, 0.05),  # not a question: it opens on "i"
        ("what", 0.85, 0.85),
        ("what time do you", 0.85, 0.05),  # its verb is still to come
        ("is it", 0.85, 0.85),
        ("the address is twelve", 0.1, 0.5),  # a number said falling: digits read out
        ("my number is five five five", 0.1, 0.1),
        ("my number is five five five one two three four five six seven", 0.85, 0.05),
    ],
)
def test_prosody_weighs_plain_text(text: str, falling: float, rising: float) -> None:
    assert POLICY.completeness(text, FALLING) == pytest.approx(falling)
    assert POLICY.completeness(text, RISING) == pytest.approx(rising)


def test_prosody_between_a_rise_and_a_fall_is_linear() -> None:
    assert POLICY.completeness("i went to the pharmacy", HALF) == pytest.approx(0.45)


@pytest.mark.parametrize(
    "text",
    [
        "I went to the pharmacy",  # capitals: a punctuating recognizer
        "i went to the pharmacy.",
        "i went to the pharmacy,",
        "is it open?",
        "",
    ],
)
def test_prosody_does_not_change_punctuated_or_empty_text(text: str) -> None:
    expected = POLICY.completeness(text)
    assert POLICY.completeness(text, FALLING) == expected
    assert POLICY.completeness(text, RISING) == expected


def test_unknown_prosody_leaves_the_text_score() -> None:
    assert not UNKNOWN.known
    assert POLICY.completeness("i went to the pharmacy", UNKNOWN) == pytest.approx(0.7)
    assert POLICY.delay("yes", UNKNOWN) == POLICY.delay("yes")


def test_delay_and_silence_take_the_prosody() -> None:
    fast = POLICY.delay("i went to the pharmacy", FALLING)
    slow = POLICY.delay("i went to the pharmacy", RISING)
    assert fast == pytest.approx(0.1 + 1.0 * 0.15)
    assert slow == pytest.approx(0.1 + 1.0 * 0.95)
    assert POLICY.silence("i went to the pharmacy", RISING) == pytest.approx(0.2 + slow)


def test_prosody_must_be_a_prosody() -> None:
    with pytest.raises(TypeError, match="prosody must be a Prosody or None, got float"):
        POLICY.delay("yes", -2.0)  # type: ignore[arg-type]


def test_prosody_from_audio_drives_the_policy() -> None:
    text = "i need eggs"
    assert POLICY.delay(text, prosody(_voice(100.0), 16000)) < 0.3
    assert POLICY.delay(text, prosody(_voice(190.0), 16000)) > 1.0


@given(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=80))
def test_any_prosody_gives_a_score_in_range(pitch: float, text: str) -> None:
    score = POLICY.completeness(text, Prosody(pitch, 0.5))
    assert 0.0 <= score <= 1.0
