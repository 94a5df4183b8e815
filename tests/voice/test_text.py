"""SentenceChunker and speakable(): where sentences end, what is spoken, and streaming
giving the same chunks as the whole text."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voxwire.voice.text
from voxwire.voice.text import SentenceChunker, speakable


def chunks(text: str, **kwargs: int) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    return chunker.push(text) + chunker.flush()


def streamed(deltas: list[str], **kwargs: int) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    out: list[str] = []
    for delta in deltas:
        out += chunker.push(delta)
    return out + chunker.flush()


def test_docstring_examples() -> None:
    result = doctest.testmod(voxwire.voice.text, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- no waiting when the text settles the end --------------------------------------------


@pytest.mark.parametrize("mark", ["?", "!"])
def test_question_and_exclamation_settle_at_once(mark: str) -> None:
    chunker = SentenceChunker()
    assert chunker.push("Is that right") == []
    assert chunker.push(mark) == [f"Is that right{mark}"]
    assert chunker.pending == ""


def test_full_stop_after_a_word_settles_at_once() -> None:
    chunker = SentenceChunker()
    assert chunker.push("Your table is booked") == []
    assert chunker.push(".") == ["Your table is booked."]
    assert chunker.push(" See you") == []
    assert chunker.flush() == ["See you"]


@pytest.mark.parametrize(
    ("first", "settles", "joined"),
    [
        ("Call Dr.", " Smith today.", ["Call Dr. Smith today."]),
        ("Ask Mr.", " Jones.", ["Ask Mr. Jones."]),
        ("Meet at St.", " Mark's square.", ["Meet at St. Mark's square."]),
        ("Fruit, e.g.", " Apples, is fine.", ["Fruit, e.g. Apples, is fine."]),
        ("That is, i.e.", " the rest.", ["That is, i.e. the rest."]),
        ("Red vs.", " Blue tonight.", ["Red vs. Blue tonight."]),
        ("It costs 3.", "5 dollars.", ["It costs 3.5 dollars."]),
        ("Version 2.", "1 is out.", ["Version 2.1 is out."]),
        ("Signed J.", " R. Smith.", ["Signed J. R. Smith."]),
        ("Open at 9 a.m.", " on weekdays.", ["Open at 9 a.m. on weekdays."]),
        ("Apples, pears, etc.", " and more.", ["Apples, pears, etc. and more."]),
        ("See you Tue.", " March 4th.", ["See you Tue. March 4th."]),
    ],
)
def test_dots_that_may_go_on_wait(first: str, settles: str, joined: list[str]) -> None:
    chunker = SentenceChunker()
    assert chunker.push(first) == []
    assert chunker.push(settles) == joined
    assert chunks(first + settles) == joined
    assert streamed([first, settles]) == joined


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We open at 9 a.m. Bring your ID.", ["We open at 9 a.m.", "Bring your ID."]),
        ("Pens, paper, etc. We have it all.", ["Pens, paper, etc.", "We have it all."]),
        ("I counted 3. Then I stopped.", ["I counted 3.", "Then I stopped."]),
        ("It was Acme Inc. They closed.", ["It was Acme Inc.", "They closed."]),
        ("I grew up in the U.S. Now I live here.", ["I grew up in the U.S.", "Now I live here."]),
    ],
)
def test_abbreviation_digit_end_a_sentence_before_a_capital(text: str, expected: list[str]) -> None:
    assert chunks(text) == expected
    chunker = SentenceChunker()
    head, _, tail = text.partition(". ")
    # The end is settled by the capital letter after the space, not before.
    assert chunker.push(head + ".") == []
    assert chunker.push(" ") == []
    assert chunker.push(tail) == expected


def test_abbreviation_waits_then_the_capital_settles() -> None:
    chunker = SentenceChunker()
    assert chunker.push("We open at 9 a.m.") == []
    assert chunker.push(" B") == ["We open at 9 a.m."]
    assert chunker.flush() == ["B"]


@pytest.mark.parametrize(
    "text",
    [
        "The total is $4.50 for two.",
        "Pi is about 3.14159 today.",
        "Meet me at 3:30 by the gate.",
        "Update to version 1.2.3 first.",
        "Visit https://example.com/a.b?q=1&x=2 for details.",
        "Go to www.example.org and sign up.",
        "Write to jane.doe@example.com with questions.",
        "Well... I think so.",
        "Let me check\u2026 found it.",
        "It was 1.5 km away.",
        "The file is called report.final.pdf today.",
    ],
)
def test_tokens_with_dots_are_never_split(text: str) -> None:
    assert chunks(text) == [speakable(text)]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    text = 'He said "stop." Then he left. (It was late.) Really?" she asked.'
    out = chunks(text)
    assert out == ["He said stop.", "Then he left.", "It was late.", "Really?", "she asked."]
    assert streamed(list(text)) == out
    assert all(c and c[0] not in "\"')." for c in out)


def test_question_mark_in_a_url_waits_for_a_space() -> None:
    chunker = SentenceChunker()
    assert chunker.push("Did you see https://x.example/page?") == []
    assert chunker.push("id=3 today?") == ["Did you see https://x.example/page?id=3 today?"]
    chunker = SentenceChunker()
    assert chunker.push("Did you see https://x.example/page?") == []
    assert chunker.push(" Yes.") == ["Did you see https://x.example/page?", "Yes."]


def test_several_sentences_in_one_delta() -> None:
    assert chunks("Hi! How are you? I'm fine. Thanks") == [
        "Hi!",
        "How are you?",
        "I'm fine.",
        "Thanks",
    ]


def test_repeated_marks_do_not_make_chunks_of_their_own() -> None:
    assert chunks("What?! No way!!! Okay.") == ["What?", "No way!", "Okay."]


# --- lines, markdown, long sentences --------------------------------------------------------


def test_markdown_lists_and_headings_are_spoken_line_by_line() -> None:
    text = "## Options\nYou can choose:\n1. Pizza with **extra** cheese\n2. Pasta\n- Salad\n"
    assert chunks(text) == [
        "Options",
        "You can choose:",
        "Pizza with extra cheese",
        "Pasta",
        "Salad",
    ]
    assert streamed(list(text)) == chunks(text)


def test_long_sentence_is_cut_at_a_clause() -> None:
    text = (
        "We have availability on Monday, Tuesday and Wednesday in the morning, "
        "and on Thursday and Friday in the afternoon after lunch."
    )
    out = chunks(text, max_chars=80)
    assert out == [
        "We have availability on Monday, Tuesday and Wednesday in the morning,",
        "and on Thursday and Friday in the afternoon after lunch.",
    ]
    assert all(len(c) <= 80 for c in out)


def test_long_sentence_without_clauses_is_cut_at_a_space_then_hard() -> None:
    out = chunks("one two three four five six seven eight nine ten", max_chars=12)
    assert out == ["one two", "three four", "five six", "seven eight", "nine ten"]
    assert chunks("abcdefghij", max_chars=4) == ["abcd", "efgh", "ij"]


def test_min_chars_joins_a_short_first_sentence() -> None:
    chunker = SentenceChunker(min_chars=20)
    assert chunker.push("Sure! ") == []
    assert chunker.push("Let me check that. One moment.") == [
        "Sure! Let me check that.",  # only the first chunk is held back
        "One moment.",
    ]
    assert chunker.push(" Ok") == []
    assert chunker.flush() == ["Ok"]
    # after flush the next reply starts over
    assert chunker.push("Hi. ") == []
    assert chunker.flush() == ["Hi."]


def test_min_chars_zero_sends_the_first_sentence_at_once() -> None:
    chunker = SentenceChunker()
    assert chunker.push("Sure!") == ["Sure!"]


def test_reset_drops_pending_text() -> None:
    chunker = SentenceChunker()
    chunker.push("Half a sen")
    chunker.reset()
    assert chunker.pending == ""
    assert chunker.push("tence.") == ["tence."]


def test_nothing_speakable_gives_no_chunk() -> None:
    assert chunks("  \n\n 🎉🎉 ** \n") == []
    assert chunks("") == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_chars": -1}, ValueError, "min_chars must be >= 0, got -1"),
        ({"max_chars": 0}, ValueError, "max_chars must be >= 1, got 0"),
        ({"min_chars": 50, "max_chars": 40}, ValueError, "max_chars must be >= min_chars"),
        ({"max_chars": 2.5}, TypeError, "max_chars must be an int, got float"),
        ({"min_chars": True}, TypeError, "min_chars must be an int, got bool"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SentenceChunker(**kwargs)  # type: ignore[arg-type]


def test_push_takes_str_only() -> None:
    with pytest.raises(TypeError, match="expected str, got bytes"):
        SentenceChunker().push(b"hi")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected str, got int"):
        speakable(3)  # type: ignore[arg-type]


# --- speakable ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Bold** and *em* and _also em_ and __strong__", "Bold and em and also em and strong"),
        ("Run `voxwire bench` now", "Run voxwire bench now"),
        ("# Title", "Title"),
        ("### Step two", "Step two"),
        ("- first item", "first item"),
        ("* starred item", "starred item"),
        ("12. twelfth item", "twelfth item"),
        ("> quoted words", "quoted words"),
        ("See [our menu](https://x.example/menu) today", "See our menu today"),
        ("![a cat](cat.png) sleeps", "a cat sleeps"),
        ("Great job! 🎉👍🏽", "Great job!"),
        ("I ❤️ it 🇬🇧", "I it"),
        ("Price: $4.50, or €3,99 (£3.20)", "Price: $4.50, or €3,99 £3.20"),
        ("Call +44 20 7946 0958 at 3:30 pm", "Call +44 20 7946 0958 at 3:30 pm"),
        ("100% done & dusted, 20°C", "100% done & dusted, 20°C"),
        ("It\u2019s \u201cquoted\u201d text", "It's quoted text"),
        ("snake_case_name stays", "snake_case_name stays"),
        ("2 * 3 = 6", "2 3 = 6"),
        ("line one\n\n   line   two\t", "line one line two"),
        ("~~old~~ new", "old new"),
        ("<b>bold</b> text<br/>", "bold text"),
        ("Café naïve", "Café naïve"),
        ("---", ""),
        ("```python\nprint(1)\n```", "print 1"),
        ("Wait\u2026 what", "Wait... what"),
        ("Hello 😀!", "Hello!"),
        ("#1 choice and a #hashtag", "#1 choice and a hashtag"),
    ],
)
def test_speakable(raw: str, spoken: str) -> None:
    assert speakable(raw) == spoken


def test_speakable_keeps_plain_text_as_is() -> None:
    text = "Your appointment is on Tuesday, March 4th, at 10:15. Is that okay?"
    assert speakable(text) == text


# --- streaming == whole ------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "Hello",
        " world",
        ".",
        "?",
        "!",
        " ",
        "\n",
        ",",
        "Dr",
        "Dr.",
        " Smith",
        "e.g.",
        "etc.",
        " 3.5",
        " 3",
        "a.m.",
        " J.",
        "$4.50",
        "https://x.example/a.b?q=1",
        "jane@x.example",
        "...",
        "\u2026",
        '"',
        ")",
        "(",
        "**",
        "*",
        "`",
        "# ",
        "- ",
        "1. ",
        "[link](http://y.example)",
        "🎉",
        " the",
        " And",
        ":",
        ";",
        " U.S.",
        "x",
    ]
)

# A delta that ends on a full stop after a word commits the sentence end (the documented
# price of not waiting); splits there, before text that would have continued the token
# ("..", ".com", ".5"), are left out of the property. What may follow a sentence's full
# stop: a space, closing marks, or more punctuation.
_AFTER_AN_END = set("\"')]}*_`~\u201d\u2019\u00bb\u203a,;:?!\uff1f\uff01\u3002")


def _split_allowed(text: str, i: int) -> bool:
    if text[i - 1] != ".":
        return True
    return text[i].isspace() or text[i] in _AFTER_AN_END


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_PIECES, max_size=30).map("".join),
    st.lists(st.integers(min_value=1, max_value=10_000), max_size=12),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=40, max_value=300),
)
def test_streaming_gives_the_same_chunks_as_the_whole_text(
    text: str, cuts: list[int], min_chars: int, max_chars: int
) -> None:
    points = sorted({c % len(text) for c in cuts if text and c % len(text)})
    points = [i for i in points if _split_allowed(text, i)]
    deltas = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    whole = chunks(text, min_chars=min_chars, max_chars=max_chars)
    assert streamed(deltas, min_chars=min_chars, max_chars=max_chars) == whole
    assert all(c and c == c.strip() for c in whole)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=1, max_value=200))
def test_any_text_char_by_char(text: str, max_chars: int) -> None:
    whole = chunks(text, max_chars=max_chars)
    points = [i for i in range(1, len(text)) if _split_allowed(text, i)]
    deltas = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert streamed(deltas, max_chars=max_chars) == whole
    assert all(c and c == c.strip() for c in whole)
