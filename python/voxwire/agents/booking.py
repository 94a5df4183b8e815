"""The demo's appointment book: a tool a voice agent calls to book a dental appointment.

:class:`Bookings` keeps appointments in SQLite (one chair: one appointment per slot).
:meth:`Bookings.book` takes the day and time as a caller says them, checks them against
the opening hours and the book, and returns a result dict: a confirmation, or an error
that names the field at fault and, for a taken slot, free alternatives. The
``book_appointment`` tool is :func:`book_spec` (what the model is told) and
:func:`book_tool` (what runs; it returns the result as JSON and never raises).

The clinic is the fictional Harbor Dental of ``demo_knowledge/`` (:data:`DEMO_KNOWLEDGE`):
open Monday to Thursday 8:00-18:00, Friday 8:00-16:00, Saturday 9:00-13:00, closed on
Sunday; appointments start every 30 minutes, the last one 30 minutes before closing.

Spoken days (:func:`parse_day`)
-------------------------------
Text is lower-cased and read word by word; the first day phrase found counts:

* ``today``, ``tomorrow``, ``day after tomorrow`` (also misspelt: ``tomorow``,
  ``to morrow``);
* a weekday (``monday``, ``wensday``: a word within a difflib ratio of 0.8 of a weekday
  name; ``mon``, ``tue`` ... and ``tues``/``thurs`` also count with ``loose``), optionally
  after ``this``/``next``/``on``: the first such day *after* today (1 to 7 days ahead;
  ``next monday`` is the same day as ``monday``);
* a date: a month name with a day number (``3 december``, ``december 3rd``, ``the third
  of december``, ``twenty first of may``), the next such date from today on; or ISO
  ``2026-12-03``.

Spoken times (:func:`parse_time`)
---------------------------------
Number words become numbers (``three`` 3, ``forty five`` 45, ``oh five`` 5) and ``p m``,
``p.m.``, ``o'clock`` are joined, then the first of these counts:

* ``noon`` / ``midday`` (12:00);
* ``half past H``, ``quarter past H``, ``quarter to H``, ``M past H``, ``M to H``
  (``passed`` for ``past`` too, as recognisers write it);
* ``HH:MM`` or ``HH.MM`` (``15:00``, ``3.30``), a four-digit ``1500``, ``fifteen
  hundred``;
* ``H [M] [o'clock] [am|pm]`` (``3 pm``, ``three thirty``, ``three oh five pm``). Without
  ``loose``, a bare number needs a cue: ``at``/``for``/``around``/``about``/``by`` before
  it, or ``am``/``pm``/``o'clock``/``hundred``/minutes after it (so "two fillings" is not
  a time); with ``loose`` (the caller was asked for a time) a bare number is one.

Morning or afternoon: an ``am``/``pm`` after the time decides, else ``morning`` (am) or
``afternoon``/``evening``/``tonight`` (pm) anywhere in the text; else an hour from 1 to 7
is afternoon (the clinic opens at 8) and 8 to 12 is as said. An hour of 13 to 23 is
already on the 24-hour clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import json
import re
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from voxwire.services.base import ToolSpec

__all__ = [
    "DEFAULT_HOURS",
    "DEMO_KNOWLEDGE",
    "SERVICES",
    "Bookings",
    "book_spec",
    "book_tool",
    "day_phrase",
    "normalize_service",
    "parse_day",
    "parse_time",
    "spoken_day",
    "spoken_time",
]

DEMO_KNOWLEDGE = Path(__file__).with_name("demo_knowledge")
"""The demo business's knowledge folder: Harbor Dental's hours, prices, services..."""

DEFAULT_HOURS: Mapping[int, tuple[dt.time, dt.time]] = {
    0: (dt.time(8), dt.time(18)),
    1: (dt.time(8), dt.time(18)),
    2: (dt.time(8), dt.time(18)),
    3: (dt.time(8), dt.time(18)),
    4: (dt.time(8), dt.time(16)),
    5: (dt.time(9), dt.time(13)),
}
"""Opening hours by weekday (Monday is 0); a missing weekday is closed."""

SERVICES = ("check-up", "cleaning", "filling", "whitening", "emergency", "consultation")
"""The services one can book."""

_SERVICE_WORDS = {
    "checkup": "check-up",
    "check": "check-up",
    "checked": "check-up",
    "examination": "check-up",
    "exam": "check-up",
    "cleaning": "cleaning",
    "cleaned": "cleaning",
    "clean": "cleaning",
    "hygienist": "cleaning",
    "polish": "cleaning",
    "scale": "cleaning",
    "filling": "filling",
    "fillings": "filling",
    "cavity": "filling",
    "whitening": "whitening",
    "whiten": "whitening",
    "whitened": "whitening",
    "bleaching": "whitening",
    "emergency": "emergency",
    "toothache": "emergency",
    "pain": "emergency",
    "broken": "emergency",
    "consultation": "consultation",
    "consult": "consultation",
}

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_ABBR = {
    "mon": 0,
    "tue": 1,
    "tues": 1,
    "wed": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_ABBR = {m[:3]: i for i, m in enumerate(_MONTHS)} | {"sept": 8}
_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50}
_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
_AM_WORDS = {"morning"}
_PM_WORDS = {"afternoon", "evening", "tonight"}
_TIME_CUES_BEFORE = {"at", "for", "around", "about", "by", "until", "till"}
_MAX_TEXT = 500  # characters of spoken text the parsers read
_ORDINAL_DIGITS = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)$")


# --- text normalisation ----------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Lower-case words, with ``p m``/``o'clock`` joined and ``3:30`` kept whole."""
    text = text[:_MAX_TEXT].lower()
    text = re.sub(r"\b([ap])\.?\s?m\b\.?", r"\1m", text)
    text = re.sub(r"\bo\s?'?\s?clock\b", " oclock ", text)
    text = re.sub(r"(\d)\s*(am|pm)\b", r"\1 \2", text)
    return re.findall(r"\d{4}-\d{2}-\d{2}|\d{1,2}[:.]\d{2}|\d+(?:st|nd|rd|th)?|[a-z]+", text)


def _number_at(words: list[str], i: int) -> tuple[int, int] | None:
    """The number spoken at ``words[i]`` and how many words it takes (0-99)."""
    if i >= len(words):
        return None
    word = words[i]
    if word.isdigit() and len(word) <= 2:
        return int(word), 1
    if word in _UNITS:
        return _UNITS[word], 1
    if word in _TENS:
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if nxt in _UNITS and _UNITS[nxt] < 10:
            return _TENS[word] + _UNITS[nxt], 2
        return _TENS[word], 1
    return None


def _ordinal_at(words: list[str], i: int) -> tuple[int, int] | None:
    """The day-of-month ordinal at ``words[i]`` (``3rd``, ``third``, ``twenty first``)."""
    if i >= len(words):
        return None
    word = words[i]
    digits = _ORDINAL_DIGITS.match(word)
    if digits:
        return int(digits.group(1)), 1
    if word.isdigit() and len(word) <= 2:
        return int(word), 1
    if word in _ORDINALS:
        return _ORDINALS[word], 1
    if word in _TENS and i + 1 < len(words):
        nxt = words[i + 1]
        if nxt in _ORDINALS and _ORDINALS[nxt] < 10:
            return _TENS[word] + _ORDINALS[nxt], 2
    return None


def _fuzzy(word: str, choices: tuple[str, ...], cutoff: float = 0.8) -> int | None:
    if len(word) < 4:
        return None
    best = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return choices.index(best[0]) if best else None


# --- days --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Day:
    kind: str  # "offset", "weekday", "date"
    value: int  # days ahead, weekday, or month*100 + day
    year: int = 0  # for ISO dates


def _find_day(text: str, loose: bool) -> _Day | None:
    words = _words(text)
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", word):
            try:
                iso = dt.date.fromisoformat(word)
            except ValueError:
                continue
            return _Day("date", iso.month * 100 + iso.day, iso.year)
        if word == "today":
            return _Day("offset", 0)
        third = words[i + 2] if i + 2 < len(words) else ""
        fourth = words[i + 3] if i + 3 < len(words) else ""
        if word == "day" and nxt == "after" and _is_tomorrow(third, fourth):
            return _Day("offset", 2)
        if _is_tomorrow(word, nxt):
            return _Day("offset", 1)
        weekday = _weekday(word, loose)
        if weekday is not None:
            return _Day("weekday", weekday)
        month = _month(word)
        if month is not None:
            # "december 3rd" / "december the third"
            j = i + 1 + (nxt == "the")
            after = _ordinal_at(words, j)
            if after and 1 <= after[0] <= 31:
                return _Day("date", (month + 1) * 100 + after[0])
            # "3 december" / "the third of december" / "twenty first of may"
            k = i - 1 - (i >= 1 and words[i - 1] == "of")
            for span in (2, 1):
                start = k - span + 1
                if start >= 0:
                    got = _ordinal_at(words, start)
                    if got and got[1] == span and 1 <= got[0] <= 31:
                        return _Day("date", (month + 1) * 100 + got[0])
    return None


def _is_tomorrow(word: str, nxt: str) -> bool:
    if word == "to" and nxt in {"morrow", "morow", "marrow"}:
        return True
    return word in {"tomorrow", "tomorow", "tommorow", "tommorrow", "tomorrows"} or (
        len(word) >= 7 and difflib.SequenceMatcher(None, word, "tomorrow").ratio() >= 0.85
    )


def _weekday(word: str, loose: bool) -> int | None:
    if word in _WEEKDAYS:
        return _WEEKDAYS.index(word)
    if word.endswith("s") and word[:-1] in _WEEKDAYS:
        return _WEEKDAYS.index(word[:-1])
    if loose and word in _WEEKDAY_ABBR:
        return _WEEKDAY_ABBR[word]
    if len(word) >= 5 and word.endswith(("day", "dy", "dai", "dey")):
        return _fuzzy(word, _WEEKDAYS)
    return None


def _month(word: str) -> int | None:
    if word in _MONTHS:
        return _MONTHS.index(word)
    if word in _MONTH_ABBR and word != "may":
        return _MONTH_ABBR[word]
    if len(word) >= 5:
        return _fuzzy(word, _MONTHS, 0.85)
    return None


def _resolve(day: _Day, today: dt.date) -> dt.date | None:
    if day.kind == "offset":
        return today + dt.timedelta(days=day.value)
    if day.kind == "weekday":
        ahead = (day.value - today.weekday() - 1) % 7 + 1
        return today + dt.timedelta(days=ahead)
    month, mday = divmod(day.value, 100)
    if day.year:
        try:
            return dt.date(day.year, month, mday)
        except ValueError:
            return None
    for year in (today.year, today.year + 1, today.year + 2, today.year + 3, today.year + 4):
        try:
            candidate = dt.date(year, month, mday)
        except ValueError:
            continue  # 29 February of a common year, or 31 April
        if candidate >= today:
            return candidate
    return None


def parse_day(text: str, today: dt.date, *, loose: bool = True) -> dt.date | None:
    """The date a spoken day phrase in ``text`` means, seen from ``today``; ``None`` if none.

    See Spoken days in the module docstring.

    >>> parse_day("can i come in on wensday", dt.date(2026, 12, 2))  # a Wednesday
    datetime.date(2026, 12, 9)
    >>> parse_day("the third of december", dt.date(2026, 12, 2))
    datetime.date(2026, 12, 3)
    """
    if not isinstance(text, str):
        return None
    day = _find_day(text, loose)
    return _resolve(day, today) if day else None


def day_phrase(text: str, *, loose: bool = False) -> str | None:
    """The day phrase in ``text`` in a canonical form :func:`parse_day` reads back.

    ``today``, ``tomorrow``, ``day after tomorrow``, a weekday name, ``3 december`` or an
    ISO date; ``None`` when ``text`` names no day.

    >>> day_phrase("uh tomorow morning please")
    'tomorrow'
    >>> day_phrase("on the twenty first of may")
    '21 may'
    """
    if not isinstance(text, str):
        return None
    day = _find_day(text, loose)
    if day is None:
        return None
    if day.kind == "offset":
        return ("today", "tomorrow", "day after tomorrow")[day.value]
    if day.kind == "weekday":
        return _WEEKDAYS[day.value]
    month, mday = divmod(day.value, 100)
    if day.year:
        return f"{day.year:04d}-{month:02d}-{mday:02d}"
    return f"{mday} {_MONTHS[month - 1]}"


def spoken_day(day: dt.date) -> str:
    """A date as said aloud: ``Thursday 3 December``."""
    return f"{_WEEKDAYS[day.weekday()].title()} {day.day} {_MONTHS[day.month - 1].title()}"


# --- times -------------------------------------------------------------------------------


def _time_words(text: str) -> list[str]:
    words = _words(text)
    # homophones of a number right before am/pm/o'clock: "at for pm"
    homophones = {"for": "four", "to": "two", "too": "two", "tree": "three", "won": "one"}
    for i, word in enumerate(words[:-1]):
        if word in homophones and words[i + 1] in {"am", "pm", "oclock"}:
            words[i] = homophones[word]
    return words


def _find_time(text: str, loose: bool) -> tuple[int, int, str] | None:
    """(hour as said, minute, "am"/"pm"/"") of the first time in ``text``."""
    words = _time_words(text)
    daypart = ""
    if any(w in _PM_WORDS for w in words):
        daypart = "pm"
    elif any(w in _AM_WORDS for w in words):
        daypart = "am"
    for i, word in enumerate(words):
        if word in {"noon", "midday"}:
            return 12, 0, "pm"
        # half past / quarter past / quarter to / M past / M to
        minute: int | None = None
        width = 1
        if word == "half":
            minute = 30
        elif word == "quarter":
            minute = 15
        else:
            got = _number_at(words, i)
            if got and got[0] < 60:
                minute, width = got
                if i + width < len(words) and words[i + width] in {"minutes", "minute"}:
                    width += 1
        if minute is not None and i + width < len(words):
            rel = words[i + width]
            if rel in {"past", "passed", "after", "to", "before"}:
                base = _number_at(words, i + width + 1)
                if base and 1 <= base[0] <= 12:
                    h = base[0]
                    ampm = _ampm(words, i + width + 1 + base[1]) or daypart
                    if rel in {"past", "passed", "after"}:
                        return h, minute, ampm
                    if minute >= 60 or minute == 0:
                        continue
                    return (h - 1) if h > 1 else 12, 60 - minute, ampm
        clock = re.fullmatch(r"(\d{1,2})[:.](\d{2})", word)
        if clock:
            h, m = int(clock.group(1)), int(clock.group(2))
            if h <= 23 and m <= 59:
                return h, m, _ampm(words, i + 1) or daypart
            continue
        if re.fullmatch(r"\d{4}", word):
            h, m = int(word[:2]), int(word[2:])
            if h <= 23 and m <= 59 and (loose or (i > 0 and words[i - 1] in _TIME_CUES_BEFORE)):
                return h, m, ""
            continue
        got = _number_at(words, i)
        if got is None or not 0 <= got[0] <= 23:
            continue
        hour, used = got
        j = i + used
        if j < len(words) and words[j] == "hundred":
            return hour, 0, ""
        mins = 0
        if j < len(words) and words[j] == "oh":
            m_got = _number_at(words, j + 1)
            if m_got and m_got[0] < 10:
                mins, j = m_got[0], j + 1 + m_got[1]
        else:
            m_got = _number_at(words, j)
            if m_got and 10 <= m_got[0] <= 59:
                mins, j = m_got[0], j + m_got[1]
        if j < len(words) and words[j] == "oclock":
            j += 1
        said = _ampm(words, j)
        cued = (i > 0 and words[i - 1] in _TIME_CUES_BEFORE) or j > i + used or bool(said)
        if loose or cued:
            return hour, mins, said or daypart
    return None


def _ampm(words: list[str], j: int) -> str:
    """The "am" or "pm" said right after a time at ``words[j]`` ("3 pm", "3 in the afternoon")."""
    if j < len(words) and words[j] in {"am", "pm"}:
        return words[j]
    if words[j : j + 2] == ["in", "the"] and j + 2 < len(words):
        if words[j + 2] in _AM_WORDS:
            return "am"
        if words[j + 2] in _PM_WORDS:
            return "pm"
    return ""


def parse_time(text: str, *, loose: bool = True) -> dt.time | None:
    """The time of day said in ``text`` (24-hour), or ``None`` if none.

    See Spoken times in the module docstring.

    >>> parse_time("half past two")
    datetime.time(14, 30)
    >>> parse_time("i need two fillings", loose=False) is None
    True
    """
    if not isinstance(text, str):
        return None
    found = _find_time(text, loose)
    if found is None:
        return None
    hour, minute, ampm = found
    if hour > 12:
        if ampm == "am":
            return None
        return dt.time(hour % 24, minute)
    if ampm == "pm":
        hour = hour % 12 + 12
    elif ampm == "am":
        hour = hour % 12
    elif 1 <= hour <= 7:
        hour += 12
    return dt.time(hour, minute)


def spoken_time(t: dt.time) -> str:
    """A time as said aloud: ``3 pm``, ``9:30 am``, ``12 noon``."""
    if t == dt.time(12):
        return "12 noon"
    suffix = "am" if t.hour < 12 else "pm"
    hour = t.hour % 12 or 12
    return f"{hour} {suffix}" if t.minute == 0 else f"{hour}:{t.minute:02d} {suffix}"


def normalize_service(text: str) -> str | None:
    """The bookable service ``text`` names (``"a cleaning please"`` -> ``cleaning``).

    Words such as ``checkup``, ``hygienist``, ``toothache`` name their service; a word of
    six letters or more within a difflib ratio of 0.8 of one counts too (``wightening``).
    """
    if not isinstance(text, str):
        return None
    words = re.findall(r"[a-z]+", text[:_MAX_TEXT].lower().replace("check-up", "checkup"))
    for i, word in enumerate(words):
        if word == "check" and i + 1 < len(words) and words[i + 1] == "up":
            return "check-up"
        if word in _SERVICE_WORDS and word != "check":
            return _SERVICE_WORDS[word]
    for word in words:
        if len(word) >= 6:
            close = difflib.get_close_matches(word, list(_SERVICE_WORDS), n=1, cutoff=0.8)
            if close and close[0] != "check":
                return _SERVICE_WORDS[close[0]]
    return None


# --- the book ----------------------------------------------------------------------------


class Bookings:
    """The appointment book (see the module docstring).

    Parameters
    ----------
    path
        The SQLite database; ``":memory:"`` (the default) lives as long as the object.
    now
        The local wall clock, as a callable returning a naive :class:`datetime.datetime`
        (default :meth:`datetime.datetime.now`): "tomorrow" and past slots are read
        from it. Tests pass a fixed time.
    hours
        Opening hours by weekday (Monday 0); see :data:`DEFAULT_HOURS`.
    slot_minutes
        The length of one appointment; slots start at opening time and every
        ``slot_minutes`` after, the last one ending at closing time.
    max_days_ahead
        The furthest day one can book.
    max_bookings
        The most appointments the book holds (a bound on the database's size).
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        now: Callable[[], dt.datetime] = dt.datetime.now,
        hours: Mapping[int, tuple[dt.time, dt.time]] = DEFAULT_HOURS,
        slot_minutes: int = 30,
        max_days_ahead: int = 90,
        max_bookings: int = 10_000,
    ) -> None:
        if not 5 <= slot_minutes <= 240:
            raise ValueError(f"slot_minutes must be 5 to 240, got {slot_minutes}")
        if max_days_ahead < 0 or max_bookings < 1:
            raise ValueError(
                f"max_days_ahead must be >= 0 and max_bookings >= 1, got "
                f"{max_days_ahead} and {max_bookings}"
            )
        for weekday, (opens, closes) in hours.items():
            if not 0 <= weekday <= 6 or opens >= closes:
                raise ValueError(f"bad opening hours for weekday {weekday}: {opens}-{closes}")
        self._now = now
        self.hours = dict(hours)
        self.slot_minutes = slot_minutes
        self.max_days_ahead = max_days_ahead
        self.max_bookings = max_bookings
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS bookings ("
                " id INTEGER PRIMARY KEY, name TEXT NOT NULL, day TEXT NOT NULL,"
                " time TEXT NOT NULL, service TEXT NOT NULL, UNIQUE (day, time))"
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Bookings:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- slots -------------------------------------------------------------------------

    def slots(self, day: dt.date) -> list[dt.time]:
        """Every appointment start on ``day`` (empty when closed)."""
        if day.weekday() not in self.hours:
            return []
        opens, closes = self.hours[day.weekday()]
        start = dt.datetime.combine(day, opens)
        end = dt.datetime.combine(day, closes)
        step = dt.timedelta(minutes=self.slot_minutes)
        out = []
        while start + step <= end:
            out.append(start.time())
            start += step
        return out

    def free_slots(self, day: dt.date) -> list[dt.time]:
        """The slots of ``day`` neither booked nor past."""
        now = self._now()
        with self._lock:
            taken = {
                r[0]
                for r in self._db.execute(
                    "SELECT time FROM bookings WHERE day = ?", (day.isoformat(),)
                )
            }
        return [
            t
            for t in self.slots(day)
            if t.strftime("%H:%M") not in taken and dt.datetime.combine(day, t) > now
        ]

    def _alternatives(self, day: dt.date, wanted: dt.time, n: int = 3) -> list[dict[str, str]]:
        """Free slots nearest ``wanted`` on ``day``, then the first free ones of later days."""

        def minutes(t: dt.time) -> int:
            return t.hour * 60 + t.minute

        found: list[tuple[dt.date, dt.time]] = []
        same = sorted(self.free_slots(day), key=lambda t: (abs(minutes(t) - minutes(wanted)), t))
        found.extend((day, t) for t in same[:n])
        probe = day
        while len(found) < n and probe < self._now().date() + dt.timedelta(
            days=self.max_days_ahead
        ):
            probe += dt.timedelta(days=1)
            free = self.free_slots(probe)
            near = sorted(free, key=lambda t: (abs(minutes(t) - minutes(wanted)), t))
            found.extend((probe, t) for t in near[: n - len(found)])
        return [_slot_dict(d, t) for d, t in found]

    # --- booking -----------------------------------------------------------------------

    def book(self, name: str, day: str, time: str, service: str = "check-up") -> dict[str, Any]:
        """Book ``service`` for ``name`` at the spoken ``day`` and ``time``.

        Returns ``{"ok": True, "confirmation": "HD-0001", "name", "day" (ISO),
        "time" ("15:00"), "service", "when" (as said aloud)}``, or ``{"ok": False,
        "error": reason, "field": the argument at fault, "message": a sentence to say,
        "alternatives": [{"day", "time", "when"}, ...]}``. Reasons: ``bad_name``,
        ``bad_day``, ``past_day``, ``too_far``, ``closed_day``, ``bad_time``,
        ``past_time``, ``outside_hours``, ``off_slot``, ``slot_taken``, ``bad_service``,
        ``full``. Raises :class:`TypeError` for arguments that are not strings.
        """
        for label, value in (("name", name), ("day", day), ("time", time), ("service", service)):
            if not isinstance(value, str):
                raise TypeError(f"{label} must be str, got {type(value).__name__}")
        clean_name = " ".join(re.findall(r"[^\W\d_][\w'.-]*", name[:200]))[:80]
        if not clean_name:
            return _error("bad_name", "name", "I didn't get a name for the booking.")
        now = self._now()
        today = now.date()
        date = parse_day(day, today)
        if date is None:
            return _error("bad_day", "day", f"I couldn't tell which day {day[:40]!r} is.")
        if date < today:
            return _error("past_day", "day", f"{spoken_day(date)} has already passed.")
        if date > today + dt.timedelta(days=self.max_days_ahead):
            return _error(
                "too_far",
                "day",
                f"We only book up to {self.max_days_ahead} days ahead.",
            )
        if date.weekday() not in self.hours:
            return _error(
                "closed_day",
                "day",
                f"We are closed on {_WEEKDAYS[date.weekday()].title()}s.",
                self._alternatives(date, dt.time(10)),
            )
        at = parse_time(time)
        if at is None:
            return _error("bad_time", "time", f"I couldn't tell what time {time[:40]!r} is.")
        opens, closes = self.hours[date.weekday()]
        slots = self.slots(date)
        if at not in slots:
            if not opens <= at < closes:
                message = (
                    f"On {_WEEKDAYS[date.weekday()].title()}s we are open from "
                    f"{spoken_time(opens)} to {spoken_time(closes)}."
                )
                return _error("outside_hours", "time", message, self._alternatives(date, at))
            return _error(
                "off_slot",
                "time",
                f"Appointments start every {self.slot_minutes} minutes.",
                self._alternatives(date, at),
            )
        if dt.datetime.combine(date, at) <= now:
            return _error(
                "past_time",
                "time",
                f"{spoken_time(at)} today has already passed.",
                self._alternatives(date, at),
            )
        kind = normalize_service(service) if service.strip() else "check-up"
        if kind is None:
            return _error(
                "bad_service",
                "service",
                f"We can book a {', a '.join(SERVICES[:-1])} or a {SERVICES[-1]}.",
            )
        with self._lock:
            count = self._db.execute("SELECT count(*) FROM bookings").fetchone()[0]
            if count >= self.max_bookings:
                return _error("full", "day", "The appointment book is full.")
            try:
                with self._db:
                    row = self._db.execute(
                        "INSERT INTO bookings (name, day, time, service) VALUES (?, ?, ?, ?)",
                        (clean_name, date.isoformat(), at.strftime("%H:%M"), kind),
                    )
            except sqlite3.IntegrityError:
                row = None
        if row is None:
            return _error(
                "slot_taken",
                "time",
                f"{spoken_time(at)} on {spoken_day(date)} is already taken.",
                self._alternatives(date, at),
            )
        return {
            "ok": True,
            "confirmation": f"HD-{row.lastrowid:04d}",
            "name": clean_name,
            "day": date.isoformat(),
            "time": at.strftime("%H:%M"),
            "service": kind,
            "when": f"{spoken_day(date)} at {spoken_time(at)}",
        }

    def list(self) -> list[dict[str, str]]:
        """Every booking, in day and time order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, day, time, service FROM bookings ORDER BY day, time"
            ).fetchall()
        return [
            {
                "confirmation": f"HD-{r[0]:04d}",
                "name": r[1],
                "day": r[2],
                "time": r[3],
                "service": r[4],
            }
            for r in rows
        ]


def _slot_dict(day: dt.date, t: dt.time) -> dict[str, str]:
    return {
        "day": day.isoformat(),
        "time": t.strftime("%H:%M"),
        "when": f"{spoken_day(day)} at {spoken_time(t)}",
    }


def _error(
    reason: str, field: str, message: str, alternatives: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "ok": False,
        "error": reason,
        "field": field,
        "message": message,
        "alternatives": alternatives or [],
    }


# --- the tool ----------------------------------------------------------------------------


def book_spec() -> ToolSpec:
    """The ``book_appointment`` tool: what a language model is told about booking."""
    return ToolSpec(
        name="book_appointment",
        description=(
            "Book a dental appointment. Pass the day and time as the caller said them; the "
            "result is JSON: a confirmation number, or an error with free alternatives."
        ),
        parameters={
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "description": "The patient's name.",
                    "minLength": 1,
                    "maxLength": 80,
                },
                "day": {
                    "type": "string",
                    "description": "The day: 'today', 'tomorrow', a weekday, '3 december' "
                    "or '2026-12-03'.",
                    "minLength": 1,
                    "maxLength": 60,
                },
                "time": {
                    "type": "string",
                    "description": "The time: '15:00', '3 pm', 'half past two'.",
                    "minLength": 1,
                    "maxLength": 60,
                },
                "service": {
                    "type": "string",
                    "description": f"One of: {', '.join(SERVICES)}.",
                    "default": "check-up",
                },
            },
            "required": ["name", "day", "time"],
            "additionalProperties": False,
        },
    )


async def book_tool(bookings: Bookings, **args: Any) -> str:
    """Run the ``book_appointment`` tool with a model's ``args``; the result as JSON.

    Missing, unknown or non-string arguments give an ``{"ok": false, "error":
    "bad_arguments", ...}`` result, never an exception. The booking runs in a worker
    thread, off the event loop.
    """
    required = ("name", "day", "time")
    missing = [k for k in required if k not in args]
    unknown = sorted(k for k in args if k not in {"name", "day", "time", "service"})
    wrong = [k for k, v in args.items() if k not in unknown and not isinstance(v, str)]
    if missing or unknown or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown {', '.join(u[:40] for u in unknown[:5])}")
        if wrong:
            parts.append(f"not text: {', '.join(wrong)}")
        result = _error("bad_arguments", (missing or wrong or ["name"])[0], "; ".join(parts) + ".")
    else:
        result = await asyncio.to_thread(
            bookings.book,
            args["name"],
            args["day"],
            args["time"],
            args.get("service", "check-up"),
        )
    return json.dumps(result, separators=(",", ":"))
