"""A deterministic local language model: intent rules, retrieval and tool calls.

:class:`RulesModel` implements :class:`~voxwire.services.base.LanguageModel` with no
network and no model file, for the demo business (a dental clinic) and for tests: the
same history always gives the same reply, streamed word by word. It reads the last user
message as an offline speech recogniser writes it (lower case, no punctuation, misheard
words) and matches intents with keyword sets and :mod:`difflib` ratios.

What it does with the last message
----------------------------------
* **A question** (hours, address, prices, parking, services, policies...): when the
  ``search_knowledge`` tool is offered it calls it, with a query made of the topic's
  words and the caller's own; when the tool's result is back it answers from the best
  passage in one or two sentences, naming the file ("According to hours.md, ..."); a
  question about services or "tell me about" gets up to four sentences. Without the tool
  it answers from passages already in the history (system or tool messages), else from
  its own ``knowledge`` base, else says it does not know.
  Common words are mapped to the files' own first ("kids" to "children", "charge" to
  "cost"). Cancelling or moving an appointment is a question (the policy), not a booking.
* **A booking** ("i'd like to book a cleaning", "could i get my teeth cleaned"): it
  collects the day, the time and the name across turns from the history, one question
  at a time (a reply to a question is read loosely: "three" is a time when a time was
  asked for), then calls ``book_appointment``; after the result it confirms, or says
  what was wrong and offers the alternatives ("the second one" picks one, "yes" takes
  the first). A question in the middle ("where do i park") is answered, then the
  pending question asked again; "never mind" stops the booking.
* **Goodbye** ("bye", "thanks that's all", "no" to "anything else?"): a short goodbye,
  then the ``end_call`` tool call so the call ends once the goodbye has played. The call
  is made when ``end_call`` is offered or when no tool is offered at all.
* Greetings, thanks and anything else get a short helpful reply; the fallback is three
  sentences long, so a caller can barge into it.

Tool call ids are ``call_1``, ``call_2``... counted over the history. The booking state is
rebuilt from the last :data:`MAX_HISTORY` messages on every call; messages are read up
to :data:`MAX_MESSAGE_CHARS` characters. Odd input (an empty history, no user message,
huge or non-text content) gives a reply, never an exception.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from voxwire.agents.booking import day_phrase, normalize_service, parse_time
from voxwire.knowledge import (
    KnowledgeBase,
    KnowledgeError,
    Passage,
    parse_passages,
    query_terms,
)
from voxwire.services.base import (
    ChatMessage,
    LlmEvent,
    StreamMixin,
    TextDelta,
    ToolCall,
    ToolSpec,
)

__all__ = ["MAX_HISTORY", "MAX_MESSAGE_CHARS", "RulesModel", "RulesStream"]

MAX_HISTORY = 60
"""The most recent messages the model reads to rebuild a booking in progress."""

MAX_MESSAGE_CHARS = 4000
"""Characters of one message the model reads."""

_MAX_REPLY_CHARS = 700
_SEARCH = "search_knowledge"
_BOOK = "book_appointment"
_END = "end_call"


# --- words and intents -----------------------------------------------------------------


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_TOPICS: dict[str, tuple[frozenset[str], str]] = {
    "hours": (
        _set(
            "hours hour open opening opened close closing closed weekend holiday holidays weekends"
        ),
        "opening hours open",
    ),
    "address": (
        _set(
            "address where located location directions street find situated "
            "entrance wheelchair lift"
        ),
        "address directions street",
    ),
    "parking": (
        _set("parking park car cars garage spaces"),
        "parking car park",
    ),
    "transport": (
        _set("bus buses train ferry transport station"),
        "public transport bus",
    ),
    "prices": (
        _set(
            "price prices pricing cost costs much fee fees charge charges expensive cheap "
            "pay payment insurance dollars card cash"
        ),
        "prices cost",
    ),
    "services": (
        _set(
            "services service offer offers treatment treatments whitening cleaning filling "
            "fillings sedation nervous checkup dentist dentists team "
            "hygienist doctor doctors speak"
        ),
        "services",
    ),
    "policy": (
        _set("cancel cancellation cancelling reschedule policy late missed notice"),
        "cancellation policy notice",
    ),
    "emergency": (
        _set("emergency emergencies urgent toothache pain broken hurts"),
        "emergency",
    ),
    "new": (_set("new patient patients register first visit form"), ""),
}
_LONG_WORDS = _set("services service offer offers treatments")
_LONG_PHRASES = ("tell me about", "tell me more", "describe", "explain", "what do you offer")
_QUESTION_STARTS = _set(
    "what whats when where how which who why do does are is can could would will"
)
_BOOK_WORDS = _set("book booking appointment appointments schedule reserve slot")
_BOOK_PHRASES = (
    "make an appointment",
    "come in",
    "see a dentist",
    "see the dentist",
    "set up an appointment",
    "get an appointment",
)
_GOODBYE_WORDS = _set("bye goodbye byebye cheerio")
_GOODBYE_PHRASES = (
    "thats all",
    "that is all",
    "thats it",
    "that is it",
    "nothing else",
    "no thanks",
    "no thank you",
    "see you",
    "hang up",
    "have a good day",
    "have a nice day",
    "all done",
    "im done",
    "im good thanks",
)
_NO = _set("no nope nah not")
_YES = _set("yes yeah yep sure ok okay please fine right correct alright")
_THANKS = _set("thanks thank thankyou cheers")
_GREETINGS = _set("hello hi hey hiya morning afternoon evening good")
_CANCEL_PHRASES = ("never mind", "nevermind", "forget it", "cancel that", "dont book", "stop")
_NAME_STOP = _set(
    """
    and i id im to for on at calling please thanks thank tomorrow today book would want
    like from the a an about looking here just um uh yes yeah no okay ok so this that is
    it its my name call me booking appointment my with in of
    """
)
_FUZZY_KEYWORDS = tuple(
    sorted(
        {w for words, _ in _TOPICS.values() for w in words if len(w) >= 5}
        | {w for w in _BOOK_WORDS | _GOODBYE_WORDS if len(w) >= 5}
    )
)


_FUZZY_BY_LETTER: dict[str, tuple[str, ...]] = {
    letter: tuple(k for k in _FUZZY_KEYWORDS if k[0] == letter)
    for letter in {k[0] for k in _FUZZY_KEYWORDS}
}


def _clean(text: object) -> str:
    """Lower-case words separated by single spaces (apostrophes dropped, digits kept)."""
    if not isinstance(text, str):
        return ""
    text = text[:MAX_MESSAGE_CHARS].lower().replace("\u2019", "'").replace("'", "")
    return " ".join(re.findall(r"[^\W_]+(?:[:.]\d+)?", text))


@lru_cache(maxsize=4096)
def _close_keyword(word: str) -> str | None:
    """The keyword a misheard ``word`` most likely is, or ``None``.

    Keywords of five letters or more with the same first letter, a length within two,
    and a difflib ratio of 0.85 or more count (recognisers rarely miss the first sound).
    """
    if len(word) < 5:
        return None
    candidates = [k for k in _FUZZY_BY_LETTER.get(word[0], ()) if abs(len(k) - len(word)) <= 2]
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.85)
    return found[0] if found else None


def _keywords(words: Sequence[str]) -> set[str]:
    """``words`` with misheard keywords replaced, plus runs of 2-3 words joined as one."""
    out = set(words)
    for word in words[:80]:
        close = _close_keyword(word)
        if close:
            out.add(close)
    for n in (2, 3):
        for i in range(min(len(words), 80) - n + 1):
            joined = "".join(words[i : i + n])
            close = _close_joined(joined)
            if close:
                out.add(close)
    return out


_JOINED_KEYWORDS = ("appointment", "goodbye", "cancellation", "whitening")


@lru_cache(maxsize=4096)
def _close_joined(joined: str) -> str | None:
    """The keyword that words run together make ("a point ment", "good by"), or ``None``."""
    for keyword in _JOINED_KEYWORDS:
        if joined[0] != keyword[0] or abs(len(joined) - len(keyword)) > 2:
            continue
        matcher = difflib.SequenceMatcher(None, joined, keyword)
        if matcher.quick_ratio() >= 0.85 and matcher.ratio() >= 0.85:
            return keyword
    return None


def _has_phrase(text: str, phrases: Iterable[str]) -> bool:
    padded = f" {text} "
    return any(f" {p} " in padded for p in phrases)


_TOPIC_PHRASES = {
    "address": ("get there", "find you", "get to you", "how far"),
    "hours": ("what time do you", "when do you"),
}
_SYNONYMS = {
    "charge": "cost",
    "charges": "cost",
    "fee": "cost",
    "fees": "cost",
    "kids": "children",
    "kid": "children",
    "child": "children",
    "son": "children",
    "daughter": "children",
    "disabled": "accessible",
    "wheelchair": "accessible",
    "checkup": "check",
    "checkups": "check",
    "whiten": "whitening",
}
_REQUESTS = (
    "i want",
    "i need",
    "id like",
    "i would like",
    "i wanna",
    "can i",
    "could i",
    "i was wondering",
    "get my",
    "have my",
    "get a",
)
_CANCEL_WORDS = _set("cancel cancellation cancelling canceling reschedule rebook")
_STRICT_QUESTION = _set("what whats when where how which who why do does is are")


def _topics(keys: set[str], text: str) -> list[str]:
    return [
        name
        for name, (words, _) in _TOPICS.items()
        if keys & words or _has_phrase(text, _TOPIC_PHRASES.get(name, ()))
    ]


@dataclass(frozen=True, slots=True)
class _Utterance:
    text: str
    words: tuple[str, ...]
    keys: frozenset[str]

    @staticmethod
    def of(content: object) -> _Utterance:
        text = _clean(content)
        words = tuple(text.split())
        return _Utterance(text, words, frozenset(_keywords(words)))

    def is_goodbye(self) -> bool:
        return bool(self.keys & _GOODBYE_WORDS) or _has_phrase(self.text, _GOODBYE_PHRASES)

    def is_booking(self) -> bool:
        """A request for an appointment ("book", "get my teeth cleaned"), not a cancellation."""
        if self.keys & _CANCEL_WORDS:
            return False
        if self.keys & _BOOK_WORDS or _has_phrase(self.text, _BOOK_PHRASES):
            return True
        return normalize_service(self.text) is not None and _has_phrase(self.text, _REQUESTS)

    def is_cancel(self) -> bool:
        return _has_phrase(self.text, _CANCEL_PHRASES)

    def topics(self) -> list[str]:
        return _topics(set(self.keys), self.text)

    def search_words(self) -> list[str]:
        """The words to search with: the caller's, common synonyms mapped to the files'."""
        return [_SYNONYMS.get(w, w) for w in self.words[:200]]

    def is_question(self) -> bool:
        if self.topics():
            return True
        return bool(self.words) and self.words[0] in _QUESTION_STARTS and len(self.words) >= 3

    def only(self, vocabulary: frozenset[str]) -> bool:
        return bool(self.words) and all(w in vocabulary for w in self.words)


# --- booking state ---------------------------------------------------------------------


@dataclass
class _Booking:
    day: str | None = None
    time: str | None = None
    name: str | None = None
    service: str = "check-up"
    alternatives: list[dict[str, str]] = field(default_factory=list)

    def missing(self) -> str | None:
        for slot in ("day", "time", "name"):
            if getattr(self, slot) is None:
                return slot
        return None

    def fill(self, said: _Utterance, expected: str | None) -> bool:
        """Take the slots ``said`` gives; return whether a day, time or name was found.

        The service is taken too, but does not count: "what does a cleaning cost" in the
        middle of a booking is a question.
        """
        found = False
        if self.alternatives and expected in {"day", "time"}:
            # "the second one" picks; "yes" takes the first, unless a day or time is said
            pick = _pick_alternative(said)
            if pick is None and not (day_phrase(said.text) or parse_time(said.text, loose=False)):
                pick = _agreed(said)
            if pick is not None and pick < len(self.alternatives):
                alt = self.alternatives[pick]
                self.day, self.time = alt.get("day"), alt.get("time")
                self.alternatives = []
                return True
        day = day_phrase(said.text, loose=expected == "day")
        if day is not None:
            self.day, found = day, True
        at = parse_time(said.text, loose=expected == "time")
        if at is not None:
            self.time, found = at.strftime("%H:%M"), True
        service = normalize_service(said.text)
        if service is not None:
            self.service = service
        name = _name(said, loose=expected == "name" and not found)
        if name is not None:
            self.name, found = name, True
        if found:
            self.alternatives = []
        return found


def _booking_turn(booking: _Booking, said: _Utterance) -> str:
    """Apply one caller turn to a booking in progress: "filled", "question" or "nothing".

    A turn that gives no day, time or name and reads as a question is left for the
    question path (the booking waits); otherwise its slots are taken.
    """
    if said.words and said.words[0] in _STRICT_QUESTION and said.topics():
        return "question"  # "what time do you close on friday": no slot taken from it
    probe = replace(booking, alternatives=list(booking.alternatives))
    if probe.fill(said, booking.missing()):
        booking.day, booking.time, booking.name = probe.day, probe.time, probe.name
        booking.service, booking.alternatives = probe.service, probe.alternatives
        return "filled"
    booking.service = probe.service
    return "question" if said.is_question() else "nothing"


def _pick_alternative(said: _Utterance) -> int | None:
    words = set(said.words)
    for index, options in enumerate(
        ({"first", "earliest", "1st"}, {"second", "2nd", "middle"}, {"third", "3rd"})
    ):
        if words & options:
            return index
    if "last" in words:
        return 2
    return None


def _agreed(said: _Utterance) -> int | None:
    """0 when ``said`` accepts the offer ("yes please", "that works"), else ``None``."""
    if said.words and said.words[0] in _YES and len(said.words) <= 4:
        return 0
    if _has_phrase(said.text, ("that works", "sounds good", "that one", "that is fine")):
        return 0
    return None


_NAME_LEADS = ("my name is", "my names", "name is", "the name is", "this is", "call me")
_LOOSE_LEADS = (
    "its",
    "it is",
    "for",
    "im",
    "i am",
    "yes",
    "yeah",
    "sure",
    "ok",
    "okay",
    "um",
    "uh",
)


def _name(said: _Utterance, *, loose: bool) -> str | None:
    """A person's name in ``said``: after "my name is"; with ``loose``, the reply itself."""
    text = said.text
    for lead in _NAME_LEADS:
        at = f" {text} ".find(f" {lead} ")
        if at >= 0:
            return _name_words(text[at + len(lead) :].split())
    if not loose:
        return None
    words = list(said.words)
    changed = True
    while changed and words:
        changed = False
        for lead in _LOOSE_LEADS:
            parts = lead.split()
            if words[: len(parts)] == parts:
                words = words[len(parts) :]
                changed = True
    if not words or len(words) > 4 or set(words) & (_BOOK_WORDS | _QUESTION_STARTS):
        return None
    return _name_words(words)


def _name_words(words: list[str]) -> str | None:
    out: list[str] = []
    for word in words:
        if word in _NAME_STOP or not word.isalpha() or len(out) == 3:
            break
        out.append(word)
    if not out or len("".join(out)) > 60:
        return None
    return " ".join(w.capitalize() for w in out)


@dataclass
class _State:
    booking: _Booking | None = None


def _tool_calls_by_id(messages: Sequence[ChatMessage]) -> dict[str, ToolCall]:
    out: dict[str, ToolCall] = {}
    for m in messages:
        for call in getattr(m, "tool_calls", ()) or ():
            if isinstance(call, ToolCall):
                out[call.id] = call
    return out


def _tool_name(message: ChatMessage, calls: dict[str, ToolCall]) -> str:
    call = calls.get(message.tool_call_id)
    if call is not None:
        return call.name
    return message.name if isinstance(message.name, str) else ""


def _json_object(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_CHARS * 4:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _rebuild(messages: Sequence[ChatMessage], calls: dict[str, ToolCall]) -> _State:
    """Replay the history's booking: slots said, results of ``book_appointment``."""
    state = _State()
    for message in messages:
        role = message.role
        if role == "user":
            said = _Utterance.of(message.content)
            booking = state.booking
            if booking is not None:
                if said.is_cancel() or said.is_goodbye():
                    state.booking = None
                else:
                    _booking_turn(booking, said)
            elif said.is_booking() and not said.is_goodbye():
                state.booking = _Booking()
                state.booking.fill(said, None)
        elif role == "tool" and _tool_name(message, calls) == _BOOK:
            result = _json_object(message.content)
            if result is None:
                continue
            if result.get("ok") is True:
                state.booking = None
            elif state.booking is not None:
                slot = result.get("field")
                if slot in {"day", "time", "name"}:
                    setattr(state.booking, slot, None)
                    if slot == "day":
                        state.booking.time = None
                alternatives = result.get("alternatives")
                if isinstance(alternatives, list):
                    state.booking.alternatives = [
                        {k: str(v)[:60] for k, v in a.items()}
                        for a in alternatives[:5]
                        if isinstance(a, dict)
                    ]
    return state


# --- answers from passages -------------------------------------------------------------

_ABBREVIATIONS = ("dr.", "mr.", "mrs.", "ms.", "st.", "no.", "e.g.", "i.e.", "approx.")
_COMMON_FIRST = _set(
    "a an the we our you your it its there this these those on in at for if when each "
    "every all most please"
)


def _units(text: str) -> list[str]:
    """The sentences of a passage (list items count as sentences), Markdown removed."""
    out: list[str] = []
    for line in text.split("\n"):
        line = re.sub(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)", "", line)
        line = line.replace("**", "").replace("__", "").replace("`", "").strip()
        if not line:
            continue
        start = 0
        for match in re.finditer(r"[.!?]+\s+(?=[A-Z0-9\"'(])", line):
            before = line[start : match.start() + 1].lower()
            if before.endswith(_ABBREVIATIONS) or re.search(r"\b[a-z]\.$", before):
                continue
            out.append(line[start : match.end()].strip())
            start = match.end()
        if line[start:].strip():
            out.append(line[start:].strip())
    return out


def _term_score(terms: Sequence[str], unit: str) -> float:
    words = set(re.findall(r"[^\W_]+", unit.lower()))
    score = 0.0
    for term in terms:
        if term in words:
            score += 1.0
            continue
        if len(term) >= 4 and any(
            len(w) >= 4 and w[:4] == term[:4] and abs(len(w) - len(term)) <= 3 for w in words
        ):
            score += 0.9
            continue
        if len(term) >= 5 and difflib.get_close_matches(term, list(words), n=1, cutoff=0.8):
            score += 0.7
    return score


def _sentence_case(unit: str, context: str) -> str:
    """``unit`` to follow "According to X, ": its first letter lowered unless a name."""
    first = unit.split(" ", 1)
    word = first[0]
    if not word or not word[0].isupper():
        return unit
    bare = word.strip(",.;:").lower()
    rest = first[1] if len(first) > 1 else ""
    if bare in _COMMON_FIRST:
        return word[0].lower() + unit[1:]
    if word.isupper() or bare == "i" or (rest[:1].isupper()):
        return unit
    if re.search(rf"[a-z,;]\s+{re.escape(word.strip(',.;:'))}\b", context):
        return unit  # capitalised mid-sentence too: a name
    return word[0].lower() + unit[1:]


def _answer(
    question: str,
    passages: Sequence[Passage],
    *,
    long: bool,
    hint: str = "",
    specific: Sequence[str] = (),
) -> str | None:
    """One or two sentences (up to four if ``long``) of the best passage, or ``None``.

    Sentences are scored by the words of ``question`` they hold (exact, same first four
    letters, or close in spelling), and at half weight by the words of ``hint`` (the
    topic's words the search was made with). ``specific`` are the caller's own words
    beyond the topic's ("implants" in "how much are implants"): when the passages hold
    none of them, the answer says so first.
    """
    terms = query_terms(question)
    hints = [t for t in query_terms(hint) if t not in terms]

    def score_of(text: str) -> float:
        return _term_score(terms, text) + 0.5 * _term_score(hints, text)

    best: tuple[float, int, int] | None = None  # score, passage index, unit index
    units_of: list[list[str]] = []
    for p_index, passage in enumerate(passages[:8]):
        units = _units(passage.text[:MAX_MESSAGE_CHARS])
        units_of.append(units)
        bonus = 0.1 * score_of(passage.heading) - 0.01 * p_index
        for u_index, unit in enumerate(units):
            score = score_of(unit) + bonus
            if best is None or score > best[0] + 1e-9:
                best = (score, p_index, u_index)
    if best is None or best[0] <= 0.05:
        return None
    _, p_index, u_index = best
    units = units_of[p_index]
    if long:  # a description: the section from its start
        chosen = list(range(min(len(units), 4)))
    else:
        top = score_of(units[u_index])
        runner = max(
            ((score_of(u), i) for i, u in enumerate(units) if i != u_index), default=(0.0, -1)
        )
        chosen = [u_index]
        if runner[1] >= 0 and runner[0] > 0 and runner[0] >= 0.75 * top:
            chosen.append(runner[1])
        chosen.sort()
    text = _bound(" ".join(units[i] for i in chosen))
    source = passages[p_index].source or "our information"
    context = " ".join(p.text for p in passages[:8])
    answer = f"According to {source}, {_sentence_case(text, context)}"
    everything = " ".join(f"{p.heading} {p.text[:MAX_MESSAGE_CHARS]}" for p in passages[:8])
    unknown = [t for t in specific[:4] if _term_score([t], everything) == 0]
    if unknown and len(unknown) == len(specific[:4]):
        return (
            f"I couldn't find anything about {_join(unknown)} in our information, but "
            f"{answer[0].lower()}{answer[1:]}"
        )
    return answer


def _bound(text: str) -> str:
    if len(text) <= _MAX_REPLY_CHARS:
        return text
    cut = text[:_MAX_REPLY_CHARS]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > 0 else cut.rsplit(" ", 1)[0] + "."


def _end_sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


# --- the model ---------------------------------------------------------------------------


class RulesStream(StreamMixin):
    """The stream of one :meth:`RulesModel.complete`: its events, optionally paced."""

    def __init__(
        self, events: Sequence[LlmEvent], first_token: float = 0.0, per_token: float = 0.0
    ) -> None:
        self.events = tuple(events)
        """Everything this completion yields, in order."""
        self._first = first_token
        self._per = per_token
        self._next = 0
        self._closed = False

    async def aclose(self) -> None:
        """Stop: nothing more is yielded."""
        self._closed = True

    def __aiter__(self) -> AsyncIterator[LlmEvent]:
        return self._run()

    async def _run(self) -> AsyncIterator[LlmEvent]:
        while not self._closed and self._next < len(self.events):
            delay = self._first if self._next == 0 else self._per
            if delay > 0:
                await asyncio.sleep(delay)
                if self._closed:
                    return
            event = self.events[self._next]
            self._next += 1
            yield event


class RulesModel:
    """A deterministic :class:`~voxwire.services.base.LanguageModel` (module docstring).

    Parameters
    ----------
    knowledge
        Searched directly when no ``search_knowledge`` tool is offered and the history
        holds no passage that answers; ``None`` to rely on the tool and the history.
    business
        The name said in greetings and goodbyes.
    first_token, per_token
        Seconds to wait before the first event and between later ones (default 0.0:
        no waiting), to stand in for a remote model's latency.
    """

    def __init__(
        self,
        knowledge: KnowledgeBase | None = None,
        *,
        business: str = "Harbor Dental",
        first_token: float = 0.0,
        per_token: float = 0.0,
    ) -> None:
        if first_token < 0 or per_token < 0:
            raise ValueError(
                f"first_token and per_token must be >= 0, got {first_token} and {per_token}"
            )
        self.knowledge = knowledge
        self.business = business
        self.first_token = first_token
        self.per_token = per_token

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> RulesStream:
        """Reply to ``messages``: text deltas word by word, then any tool call."""
        return RulesStream(self.reply(messages, tools), self.first_token, self.per_token)

    def reply(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> list[LlmEvent]:
        """The events :meth:`complete` streams, all at once."""
        history = [m for m in list(messages)[-10_000:] if isinstance(m, ChatMessage)]
        offered = {t.name for t in tools if isinstance(t, ToolSpec)}
        turn = _Turn(self, history, offered)
        return turn.events()


class _Turn:
    """One reply being decided."""

    def __init__(self, model: RulesModel, history: list[ChatMessage], offered: set[str]) -> None:
        self.model = model
        self.history = history
        self.recent = history[-MAX_HISTORY:]
        self.offered = offered
        self.calls = _tool_calls_by_id(self.recent)
        self.made = sum(len(m.tool_calls) for m in history if m.role == "assistant")

    # --- output helpers ----------------------------------------------------------------

    def _call(self, name: str, arguments: dict[str, Any]) -> ToolCall:
        self.made += 1
        return ToolCall(id=f"call_{self.made}", name=name, arguments=arguments)

    @staticmethod
    def _say(text: str) -> list[LlmEvent]:
        return [TextDelta(piece) for piece in re.findall(r"\S+\s*", text.strip())]

    def _goodbye(self) -> list[LlmEvent]:
        events = self._say(f"Thank you for calling {self.model.business}. Goodbye!")
        if _END in self.offered or not self.offered:
            events.append(self._call(_END, {}))
        return events

    # --- the decision ------------------------------------------------------------------

    def events(self) -> list[LlmEvent]:
        if not self.history or not any(m.role == "user" for m in self.history):
            return self._say(
                f"Hello, thank you for calling {self.model.business}. How can I help you today?"
            )
        last = self.history[-1]
        if last.role == "tool":
            return self._after_tool(last)
        if last.role == "assistant":
            return []  # the model already spoke last: nothing to add
        users = [i for i, m in enumerate(self.recent) if m.role == "user"]
        if not users:  # only system messages since the last reply
            return self._say("How can I help you today?")
        at = users[-1]
        state = _rebuild(self.recent[:at], self.calls)
        return self._after_user(_Utterance.of(self.recent[at].content), state, at)

    def _after_user(self, said: _Utterance, state: _State, at: int) -> list[LlmEvent]:
        if not said.words:
            return self._say("Sorry, I didn't catch that. Could you say it again?")
        booking = state.booking
        if said.is_goodbye() or (self._asked_anything_else(at) and said.only(_NO | _THANKS)):
            return self._goodbye()
        if booking is not None:
            if said.is_cancel():
                return self._say(
                    "No problem, I won't book anything. Is there anything else I can help with?"
                )
            expected = booking.missing()
            outcome = _booking_turn(booking, said)
            if outcome == "question":
                return self._question(said)
            if outcome == "nothing" and expected is not None:
                return self._say(f"Sorry, I didn't get that. {_ask(expected)}")
            return self._advance(booking)
        if said.is_booking():
            if _BOOK not in self.offered:
                return self._say(
                    "I'm sorry, I can't book appointments on this line. Please call us "
                    "during opening hours and the front desk will book you in."
                )
            booking = _Booking()
            booking.fill(said, None)
            return self._advance(booking, opening="Sure, I can book that for you. ")
        if said.is_question():
            return self._question(said)
        if said.only(_THANKS | {"you", "very", "much", "great", "ok", "okay", "so"}):
            return self._say("You're welcome! Is there anything else I can help with?")
        if self._asked_anything_else(at) and said.words[0] in _YES:
            return self._say("Sure, what can I help you with?")
        if said.only(_GREETINGS | {"there", "yes", "hi", "hey"}):
            return self._say(
                f"Hello! You've reached {self.model.business}. How can I help you today?"
            )
        return self._say(
            "I'm sorry, I'm not sure I can help with that. I can tell you about our opening "
            "hours, prices, services, address and parking, or book an appointment for you. "
            "What would you like to do?"
        )

    def _asked_anything_else(self, at: int) -> bool:
        """Whether the reply before the user turn at ``recent[at]`` asked "anything else"."""
        for m in reversed(self.recent[:at]):
            if m.role == "assistant" and isinstance(m.content, str) and m.content:
                return "anything else" in m.content[-200:].lower()
            if m.role == "user":
                return False
        return False

    def _advance(self, booking: _Booking, opening: str = "") -> list[LlmEvent]:
        slot = booking.missing()
        if slot is not None:
            return self._say(opening + _ask(slot))
        return [
            self._call(
                _BOOK,
                {
                    "name": booking.name or "",
                    "day": booking.day or "",
                    "time": booking.time or "",
                    "service": booking.service,
                },
            )
        ]

    # --- questions ---------------------------------------------------------------------

    def _question(self, said: _Utterance) -> list[LlmEvent]:
        query = _query(said)
        if _SEARCH in self.offered:
            return [self._call(_SEARCH, {"query": query})]
        long = _is_long(said)
        specific = _specific(said)
        from_history = self._passages_in_history()
        kwargs: dict[str, Any] = {"long": long, "hint": query, "specific": specific}
        asked = " ".join(said.search_words())
        answer = _answer(asked, from_history, **kwargs) if from_history else None
        if answer is None and self.model.knowledge is not None:
            try:
                found = self.model.knowledge.search(query, k=3)
            except (sqlite3.Error, KnowledgeError):  # a broken database must not end the call
                found = []
            answer = _answer(asked, found, **kwargs) if found else None
        if answer is None:
            context = self._context_text()
            if context:
                only = [Passage("our information", "", 0, context)]
                answer = _answer(asked, only, **kwargs)
        if answer is None:
            return self._say(
                "I'm sorry, I don't have that information to hand. I can tell you about our "
                "opening hours, prices, services, address and parking."
            )
        return self._say(answer + self._pending_question())

    def _passages_in_history(self) -> list[Passage]:
        for m in reversed(self.recent):
            if m.role in {"system", "tool"} and isinstance(m.content, str):
                found = parse_passages(m.content[: MAX_MESSAGE_CHARS * 4])
                if found:
                    return found
        return []

    def _context_text(self) -> str:
        parts = [
            m.content[:MAX_MESSAGE_CHARS]
            for m in self.recent
            if m.role == "system" and isinstance(m.content, str)
        ]
        return "\n".join(parts)

    def _pending_question(self) -> str:
        state = _rebuild(self.recent, self.calls)
        if state.booking is not None and state.booking.missing() is not None:
            return " Now, back to your booking. " + _ask(state.booking.missing() or "day")
        return ""

    # --- tool results ------------------------------------------------------------------

    def _after_tool(self, result: ChatMessage) -> list[LlmEvent]:
        name = _tool_name(result, self.calls)
        content = result.content if isinstance(result.content, str) else ""
        if name == _SEARCH:
            call = self.calls.get(result.tool_call_id)
            query = ""
            if call is not None and isinstance(call.arguments, dict):
                query = str(call.arguments.get("query", ""))[:MAX_MESSAGE_CHARS]
            question = self._last_user()
            passages = parse_passages(content[: MAX_MESSAGE_CHARS * 4])
            answer = _answer(
                " ".join(question.search_words()),
                passages,
                long=_is_long(question),
                hint=query,
                specific=_specific(question),
            )
            if answer is None:
                return self._say(
                    "I'm sorry, I couldn't find that in our information. I can tell you "
                    "about our opening hours, prices, services, address and parking."
                    + self._pending_question()
                )
            return self._say(answer + self._pending_question())
        if name == _BOOK:
            return self._after_booking(_json_object(content))
        if name == _END:
            return []
        return self._say("All right. Is there anything else I can help with?")

    def _last_user(self) -> _Utterance:
        for m in reversed(self.recent):
            if m.role == "user":
                return _Utterance.of(m.content)
        return _Utterance.of("")

    def _after_booking(self, result: dict[str, Any] | None) -> list[LlmEvent]:
        if result is None:
            return self._say(
                "I'm sorry, something went wrong with the booking system. Please call "
                "back later and we will book you in."
            )
        if result.get("ok") is True:
            name = str(result.get("name", ""))[:60].split(" ")[0]
            service = str(result.get("service", "appointment"))[:40]
            when = str(result.get("when", ""))[:80]
            code = str(result.get("confirmation", ""))[:40]
            article = "an" if service[:1] in set("aeiou") else "a"
            return self._say(
                f"You're booked in for {article} {service} on {when}"
                f"{', ' + name if name else ''}. "
                f"Your confirmation number is {code}. Is there anything else I can help with?"
            )
        message = _end_sentence(str(result.get("message", "That slot doesn't work."))[:300])
        state = _rebuild(self.recent, self.calls)
        booking = state.booking or _Booking()
        offer = _offer(booking.alternatives)
        if offer:
            return self._say(f"I'm sorry, {_sentence_case(message, '')} {offer}")
        slot = booking.missing() or "time"
        return self._say(f"I'm sorry, {_sentence_case(message, '')} {_ask(slot, again=True)}")


def _ask(slot: str, *, again: bool = False) -> str:
    if slot == "day":
        return "What other day would suit you?" if again else "What day would you like to come in?"
    if slot == "time":
        return "What other time would suit you?" if again else "And what time would suit you?"
    return "Can I have your name, please?"


def _offer(alternatives: Sequence[dict[str, str]]) -> str:
    """ "I could do Thursday 3 December at 3:30 pm or 2:30 pm. Which would you prefer?" """
    groups: dict[str, list[str]] = {}
    for alt in alternatives[:3]:
        day, _, at = alt.get("when", "").rpartition(" at ")
        if day and at:
            groups.setdefault(day, []).append(at)
    if not groups:
        return ""
    parts = [f"{day} at {_join(times)}" for day, times in groups.items()]
    return f"I could do {_join(parts)}. Which would you prefer?"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _is_long(said: _Utterance) -> bool:
    """A question asking for a description: "what services do you offer", "tell me about"."""
    return bool(said.keys & _LONG_WORDS) or _has_phrase(said.text, _LONG_PHRASES)


_TOPIC_WORDS = frozenset(w for words, _ in _TOPICS.values() for w in words)


def _specific(said: _Utterance) -> list[str]:
    """The caller's words a topic does not cover ("implants" in "how much are implants").

    Only for questions about prices or services, where a thing the clinic does not do
    must not get the price of another.
    """
    topics = set(said.topics())
    if not topics or not topics <= {"prices", "services"}:
        return []
    return [t for t in query_terms(said.text) if len(t) >= 4 and t not in _TOPIC_WORDS | _NAME_STOP]


def _query(said: _Utterance) -> str:
    """The search query for a question: the topics' words, then the caller's own."""
    words: list[str] = []
    for topic in said.topics():
        words.extend(_TOPICS[topic][1].split())
    words.extend(query_terms(" ".join(said.search_words())))
    unique = list(dict.fromkeys(words))[:12]
    return " ".join(unique) or said.text[:200]
