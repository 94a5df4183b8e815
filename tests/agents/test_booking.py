"""The demo's appointment book: spoken days and times, validation, taken slots, the tool."""

from __future__ import annotations

import asyncio
import datetime as dt
import doctest
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voxwire.agents.booking
from voxwire.agents.booking import (
    DEMO_KNOWLEDGE,
    SERVICES,
    Bookings,
    book_spec,
    book_tool,
    day_phrase,
    normalize_service,
    parse_day,
    parse_time,
    spoken_day,
    spoken_time,
)

# Wednesday 2 December 2026, 10:00
NOW = dt.datetime(2026, 12, 2, 10, 0)
TODAY = NOW.date()


@pytest.fixture
def book() -> Iterator[Bookings]:
    with Bookings(now=lambda: NOW) as bookings:
        yield bookings


# --- spoken days and times ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("today", TODAY),
        ("tomorrow", dt.date(2026, 12, 3)),
        ("tomorow morning", dt.date(2026, 12, 3)),
        ("to morrow", dt.date(2026, 12, 3)),
        ("the day after tomorrow", dt.date(2026, 12, 4)),
        ("monday", dt.date(2026, 12, 7)),
        ("next monday", dt.date(2026, 12, 7)),
        ("on wednesday", dt.date(2026, 12, 9)),  # today is a Wednesday: a week ahead
        ("wensday", dt.date(2026, 12, 9)),
        ("thursdy please", dt.date(2026, 12, 3)),
        ("fridays", dt.date(2026, 12, 4)),
        ("3 december", dt.date(2026, 12, 3)),
        ("december 3rd", dt.date(2026, 12, 3)),
        ("december the third", dt.date(2026, 12, 3)),
        ("the third of december", dt.date(2026, 12, 3)),
        ("the first of december", dt.date(2027, 12, 1)),  # already past this year
        ("twenty first of january", dt.date(2027, 1, 21)),
        ("jan 5", dt.date(2027, 1, 5)),
        ("february 29", dt.date(2028, 2, 29)),
        ("2027-03-04", dt.date(2027, 3, 4)),
        ("i could come in on friday at ten", dt.date(2026, 12, 4)),
    ],
)
def test_spoken_days(said: str, expected: dt.date) -> None:
    assert parse_day(said, TODAY) == expected
    phrase = day_phrase(said, loose=True)
    assert phrase is not None
    assert parse_day(phrase, TODAY) == expected  # the canonical phrase reads back


@pytest.mark.parametrize(
    "said", ["", "whenever", "may i book", "my birthday", "someday", "2026-02-30", "the 40th"]
)
def test_no_day(said: str) -> None:
    assert parse_day(said, TODAY) is None
    assert day_phrase(said) is None


def test_day_abbreviations_need_loose_reading() -> None:
    assert parse_day("fri", TODAY) == dt.date(2026, 12, 4)
    assert parse_day("i sat down", TODAY, loose=False) is None
    assert day_phrase("tues", loose=True) == "tuesday"
    assert day_phrase("tues") is None


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("3 pm", dt.time(15)),
        ("3pm", dt.time(15)),
        ("3 p.m.", dt.time(15)),
        ("three p m", dt.time(15)),
        ("three pm", dt.time(15)),
        ("15:00", dt.time(15)),
        ("15.30", dt.time(15, 30)),
        ("half past two", dt.time(14, 30)),
        ("half passed two", dt.time(14, 30)),
        ("quarter past nine", dt.time(9, 15)),
        ("quarter to four", dt.time(15, 45)),
        ("twenty past eleven", dt.time(11, 20)),
        ("ten to twelve", dt.time(11, 50)),
        ("three thirty", dt.time(15, 30)),
        ("three oh five", dt.time(15, 5)),
        ("nine forty five am", dt.time(9, 45)),
        ("two oclock", dt.time(14)),
        ("two o'clock", dt.time(14)),
        ("fifteen hundred", dt.time(15)),
        ("at 1500", dt.time(15)),
        ("noon", dt.time(12)),
        ("midday", dt.time(12)),
        ("twelve", dt.time(12)),
        ("eight", dt.time(8)),
        ("seven", dt.time(19)),
        ("at 3 in the afternoon", dt.time(15)),
        ("ten in the morning", dt.time(10)),
        ("tomorrow morning at ten", dt.time(10)),
        ("at for p m", dt.time(16)),
        ("i am free at three", dt.time(15)),  # "i am" is not "a.m."
        ("3 am", dt.time(3)),
        ("17:45", dt.time(17, 45)),
    ],
)
def test_spoken_times(said: str, expected: dt.time) -> None:
    assert parse_time(said) == expected


@pytest.mark.parametrize("said", ["i need two fillings", "there are three of us", "one more"])
def test_a_bare_number_is_a_time_only_when_read_loosely(said: str) -> None:
    assert parse_time(said, loose=False) is None
    assert parse_time(said) is not None


@pytest.mark.parametrize("said", ["", "whenever suits", "25:00", "13 am", "99"])
def test_no_time(said: str) -> None:
    assert parse_time(said) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_parsers_never_raise(text: str) -> None:
    day = parse_day(text, TODAY)
    assert day is None or day >= TODAY
    at = parse_time(text)
    assert at is None or isinstance(at, dt.time)
    day_phrase(text, loose=True)
    normalize_service(text)


def test_parsers_take_only_text_and_bounded_text() -> None:
    assert parse_day(3, TODAY) is None  # type: ignore[arg-type]
    assert parse_time(None) is None  # type: ignore[arg-type]
    assert day_phrase(b"monday") is None  # type: ignore[arg-type]
    assert parse_time("x " * 100_000 + "3 pm") is None  # past the 500 characters read


def test_services_and_spoken_forms() -> None:
    assert normalize_service("a check up please") == "check-up"
    assert normalize_service("check-up") == "check-up"
    assert normalize_service("i have a toothache") == "emergency"
    assert normalize_service("teeth wightening") == "whitening"
    assert normalize_service("a haircut") is None
    assert spoken_day(dt.date(2026, 12, 3)) == "Thursday 3 December"
    assert spoken_time(dt.time(15)) == "3 pm"
    assert spoken_time(dt.time(9, 30)) == "9:30 am"
    assert spoken_time(dt.time(12)) == "12 noon"
    assert spoken_time(dt.time(12, 30)) == "12:30 pm"


# --- booking -----------------------------------------------------------------------------


def test_a_booking_is_stored_and_confirmed(book: Bookings) -> None:
    result = book.book("john smith", "tomorrow", "three pm", "a cleaning")
    assert result == {
        "ok": True,
        "confirmation": "HD-0001",
        "name": "john smith",
        "day": "2026-12-03",
        "time": "15:00",
        "service": "cleaning",
        "when": "Thursday 3 December at 3 pm",
    }
    assert book.book("Ann", "thursday", "9:30 am")["confirmation"] == "HD-0002"
    assert book.list() == [
        {
            "confirmation": "HD-0002",
            "name": "Ann",
            "day": "2026-12-03",
            "time": "09:30",
            "service": "check-up",
        },
        {
            "confirmation": "HD-0001",
            "name": "john smith",
            "day": "2026-12-03",
            "time": "15:00",
            "service": "cleaning",
        },
    ]


def test_a_taken_slot_names_the_nearest_free_ones(book: Bookings) -> None:
    assert book.book("Ann", "tomorrow", "3 pm")["ok"]
    assert book.book("Bob", "tomorrow", "3:30 pm")["ok"]
    result = book.book("Cy", "thursday", "fifteen hundred")
    assert result["ok"] is False
    assert result["error"] == "slot_taken"
    assert result["field"] == "time"
    assert "3 pm on Thursday 3 December is already taken" in result["message"]
    assert [(a["day"], a["time"]) for a in result["alternatives"]] == [
        ("2026-12-03", "14:30"),
        ("2026-12-03", "14:00"),
        ("2026-12-03", "16:00"),
    ]
    assert result["alternatives"][0]["when"] == "Thursday 3 December at 2:30 pm"
    assert len(book.list()) == 2


def test_a_full_day_offers_the_next_days(book: Bookings) -> None:
    saturday = dt.date(2026, 12, 5)
    for t in book.slots(saturday):
        assert book.book("Filler", "saturday", t.strftime("%H:%M"))["ok"]
    assert book.free_slots(saturday) == []
    result = book.book("Late", "saturday", "10 am")
    assert result["error"] == "slot_taken"
    # Sunday is closed: the alternatives are Monday's slots nearest 10 am
    assert [(a["day"], a["time"]) for a in result["alternatives"]] == [
        ("2026-12-07", "10:00"),
        ("2026-12-07", "09:30"),
        ("2026-12-07", "10:30"),
    ]


@pytest.mark.parametrize(
    ("day", "time", "error", "field"),
    [
        ("whenever", "3 pm", "bad_day", "day"),
        ("sunday", "10 am", "closed_day", "day"),
        ("2026-12-01", "10 am", "past_day", "day"),
        ("2027-06-01", "10 am", "too_far", "day"),
        ("tomorrow", "soon", "bad_time", "time"),
        ("tomorrow", "7 am", "outside_hours", "time"),
        ("tomorrow", "6 pm", "outside_hours", "time"),
        ("friday", "4 pm", "outside_hours", "time"),  # Friday closes at 4
        ("saturday", "1 pm", "outside_hours", "time"),
        ("tomorrow", "3:10 pm", "off_slot", "time"),
        ("tomorrow", "5:45 pm", "off_slot", "time"),
        ("today", "9 am", "past_time", "time"),
        ("today", "10 am", "past_time", "time"),
    ],
)
def test_invalid_slots_are_error_results(
    book: Bookings, day: str, time: str, error: str, field: str
) -> None:
    result = book.book("Ann", day, time)
    assert result["ok"] is False
    assert (result["error"], result["field"]) == (error, field)
    assert result["message"].endswith(".")
    assert book.list() == []


def test_closed_day_and_hours_messages_offer_what_is_open(book: Bookings) -> None:
    closed = book.book("Ann", "sunday", "10 am")
    assert closed["message"] == "We are closed on Sundays."
    assert closed["alternatives"][0]["day"] == "2026-12-07"
    late = book.book("Ann", "friday", "five pm")
    assert late["message"] == "On Fridays we are open from 8 am to 4 pm."
    assert late["alternatives"][0]["time"] == "15:30"
    assert book.book("Ann", "today", "10:30")["ok"]  # later today is fine


def test_names_and_services_are_validated(book: Bookings) -> None:
    assert book.book("  ", "tomorrow", "3 pm")["error"] == "bad_name"
    assert book.book("1234 !!", "tomorrow", "3 pm")["error"] == "bad_name"
    assert book.book("Ann", "tomorrow", "3 pm", "haircut")["error"] == "bad_service"
    assert book.book("x" * 5000, "tomorrow", "3 pm", "")["name"] == "x" * 80
    assert book.book("O'Brien-Smith", "tomorrow", "4 pm", "whitening")["name"] == ("O'Brien-Smith")
    with pytest.raises(TypeError, match="name must be str"):
        book.book(None, "tomorrow", "3 pm")  # type: ignore[arg-type]


def test_the_book_is_bounded_and_persists(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    with Bookings(db, now=lambda: NOW, max_bookings=1) as bookings:
        assert bookings.book("Ann", "tomorrow", "3 pm")["ok"]
        assert bookings.book("Bob", "tomorrow", "4 pm")["error"] == "full"
    with Bookings(db, now=lambda: NOW) as again:
        assert [b["name"] for b in again.list()] == ["Ann"]
        assert again.book("Bob", "tomorrow", "3 pm")["error"] == "slot_taken"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="slot_minutes"):
        Bookings(slot_minutes=1)
    with pytest.raises(ValueError, match="opening hours"):
        Bookings(hours={0: (dt.time(18), dt.time(8))})
    with pytest.raises(ValueError, match="max_days_ahead"):
        Bookings(max_days_ahead=-1)


def test_slots_follow_the_opening_hours(book: Bookings) -> None:
    monday = book.slots(dt.date(2026, 12, 7))
    assert (monday[0], monday[-1], len(monday)) == (dt.time(8), dt.time(17, 30), 20)
    assert book.slots(dt.date(2026, 12, 6)) == []  # Sunday
    assert book.slots(dt.date(2026, 12, 5))[-1] == dt.time(12, 30)  # Saturday


def test_the_demo_knowledge_states_the_same_hours() -> None:
    hours = (DEMO_KNOWLEDGE / "hours.md").read_text(encoding="utf-8")
    assert "Monday to Thursday from 8 am to 6 pm" in hours
    assert "Friday from 8 am to 4 pm" in hours
    assert "Saturday we are open from 9 am to 1 pm" in hours
    assert "closed on Sunday" in hours


# --- the tool ----------------------------------------------------------------------------


def test_book_spec_is_a_json_schema_tool() -> None:
    spec = book_spec()
    assert spec.name == "book_appointment"
    assert spec.parameters["required"] == ["name", "day", "time"]
    assert set(spec.parameters["properties"]) == {"name", "day", "time", "service"}
    assert all(s in spec.parameters["properties"]["service"]["description"] for s in SERVICES)


def test_book_tool_returns_json_and_never_raises(book: Bookings) -> None:
    ok = json.loads(asyncio.run(book_tool(book, name="Ann", day="monday", time="ten am")))
    assert ok["ok"] is True
    assert ok["when"] == "Monday 7 December at 10 am"
    taken = json.loads(asyncio.run(book_tool(book, name="Bob", day="monday", time="10:00")))
    assert taken["error"] == "slot_taken"
    for args in (
        {},
        {"name": "Ann", "day": "monday"},
        {"name": 3, "day": "monday", "time": "3 pm"},
        {"name": "Ann", "day": "monday", "time": "3 pm", "colour": "blue"},
        {"name": "Ann", "day": ["monday"], "time": "3 pm", "service": None},
    ):
        result = json.loads(asyncio.run(book_tool(book, **args)))
        assert result["ok"] is False
        assert result["error"] == "bad_arguments"
    assert len(book.list()) == 1


def test_docstring_examples() -> None:
    result = doctest.testmod(voxwire.agents.booking, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5
    assert result.failed == 0
