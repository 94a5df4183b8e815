"""TurnPolicy: the completeness of a transcript and the delay it gives."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import voxwire.voice.turns
from voxwire.voice.turns import TurnPolicy

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
