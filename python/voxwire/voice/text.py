"""Language-model text to speakable chunks for streaming text-to-speech.

A reply streams in as small text deltas. Speech synthesis sounds best a sentence at a
time, and the caller hears the reply soonest when the first sentence goes out the moment
its text is complete. :class:`SentenceChunker` cuts the stream into sentences (clauses,
when a sentence runs long) and hands each one over as soon as the text settles where it
ends; :func:`speakable` removes what a synthesizer should not read aloud.

>>> from voxwire.voice.text import SentenceChunker
>>> chunker = SentenceChunker()
>>> chunker.push("Sure! Your table is booked")
['Sure!']
>>> chunker.push(" for 7:30 p.m.")   # "p.m." may go on: "p.m. on Friday"
[]
>>> chunker.push(" Dr. Smith will")
['Your table is booked for 7:30 p.m.']
>>> chunker.push(" join you.")      # a full stop after a word settles at once
['Dr. Smith will join you.']
>>> chunker.flush()
[]

Where a sentence ends
---------------------
* ``?`` and ``!`` end a sentence at once.
* ``.`` ends a sentence at once after an ordinary word, with no wait for the next delta.
  After a known abbreviation (``etc.``, ``a.m.``, ``Inc.``, a dotted word like ``U.S.``),
  a number (``3.`` may become ``3.5``) or a single capital (``J.``) it waits for the text
  after it: the sentence ends when a space and a capital letter follow (a digit too,
  after an abbreviation). Titles and Latin forms (``Dr.``, ``Mr.``, ``Mrs.``, ``St.``,
  ``e.g.``, ``i.e.``, ``vs.``, ...), day and month names (``Tue.``, ``Mar.``) and a
  capital initial before a word (``J. R. Smith``) never end one.
* A dot inside a token is no boundary: decimals (``3.5``), prices (``$4.50``), versions
  (``1.2.3``), domains, URLs and e-mail addresses (a ``?`` or ``.`` in a token holding
  ``://``, ``www.`` or ``@`` ends a sentence only once a space follows it). Times
  (``3:30``) never split.
* An ellipsis (``...`` or ``…``) is a pause inside a sentence, not its end.
* A line break ends a chunk (headings, list items and paragraphs are spoken one by one);
  a number and a dot opening a line (``1. ``) is a list bullet, not a sentence.
* A sentence longer than ``max_chars`` characters is cut at its last ``,`` ``;`` or ``:``
  followed by a space within the limit, else at its last space, else at the limit.
* Closing quotes, brackets and emphasis marks after the end go with it (they are not
  spoken, see :func:`speakable`), never into a chunk of their own.

Chunks are identical however the text is split into deltas, with one deliberate
exception, the price of never waiting: a delta that ends on a full stop after an ordinary
word commits the sentence end there, even if the next delta goes on with ``..`` or
``com``. Language-model tokenizers keep ``...``, ``.com`` and the like as single tokens,
so a real stream does not split them that way.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["SentenceChunker", "speakable"]

# --- speakable -----------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~).*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s+|$)")
_QUOTE = re.compile(r"^\s*(>\s*)+")
_BULLET = re.compile(r"^\s*(?:[-*+\u2022\u2023\u25e6\u2043\u2219]|\d{1,3}[.)])\s+")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EM_STAR = re.compile(r"\*(?=\S)(.+?)(?<=\S)\*")
_EM_UNDER = re.compile(r"(?<![A-Za-z0-9])_(?=\S)(.+?)(?<=\S)_(?![A-Za-z0-9])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_CODE = re.compile(r"`+([^`]*)`+")
_HASH = re.compile(r"#(?!\d)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?%](?:\s|$))")
_REPEATED_COMMAS = re.compile(r"([,;:])(?:\s*[,;:])+")
_LEADING_PUNCT = re.compile(r"^(?:[\s,;:!?\u2013\u2014]|[.\-](?!\d))+")
_STRAY_UNDERSCORE = re.compile(r"(?<![^\W_])_+|_+(?![^\W_])")
_WHITESPACE = re.compile(r"\s+")
_INNER_APOSTROPHE = re.compile(r"(?<=\w)\u2019(?=\w)")

# Symbols dropped wherever they stand: markup and bracketing that a synthesizer would
# either read out ("asterisk") or has no use for. Quotes and brackets go too; the words
# inside them stay.
_DROP: Final = frozenset('*`~^|\\{}[]<>"()\u201c\u201d\u201e\u201f\u00ab\u00bb\u2018\u2039\u203a')
# "Other symbol" characters worth keeping: they read as words.
_KEEP_SYMBOLS: Final = frozenset("\u00b0\u2116")  # degree sign, numero sign
# Pictographs and emoji (So), their modifiers (Sk, Me), format controls such as the
# zero-width joiner (Cf), surrogates, private use and unassigned code points.
_DROP_CATEGORIES: Final = frozenset({"So", "Sk", "Me", "Cf", "Cs", "Co", "Cn", "Cc"})


def _char_ok(ch: str) -> bool:
    if ch in _DROP:
        return False
    if ch.isascii():
        return ch.isprintable() or ch in "\t\n"
    if ch in _KEEP_SYMBOLS:
        return True
    category = unicodedata.category(ch)
    if category == "Mn":
        # Combining accents belong to their letter (a decomposed "é"); emoji modifiers
        # such as the variation selectors are Mn too, and go.
        return not (0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF)
    return category not in _DROP_CATEGORIES


def _strip_line(line: str) -> str:
    if _FENCE.match(line) or _RULE.match(line):
        return ""
    line = _QUOTE.sub("", line)
    line = _HEADING.sub("", line)
    return _BULLET.sub("", line)


def speakable(text: str) -> str:
    """``text`` as a synthesizer should read it.

    Removes markdown (``**bold**``, ``*em*``, ``_em_``, ``~~struck~~``, ``code`` spans and
    fences, ``#`` headings, ``- `` / ``* `` / ``1. `` bullets and ``>`` quotes at line
    starts, rules, HTML tags; ``[text](url)`` becomes ``text``), emoji and other
    pictographs, quotes, brackets and stray symbols, and collapses whitespace (line breaks
    included) to single spaces. Letters, numbers, currency (``$4.50``), ``%``, ``&``,
    ``+``, ``=``, ``/``, ``@``, apostrophes, dashes and normal punctuation stay.

    Parameters
    ----------
    text : str
        Any text, one line or many.

    Returns
    -------
    str
        The cleaned text, stripped; empty when nothing speakable is left.

    Examples
    --------
    >>> speakable("## Your order\\n- **2** pizzas 🍕, [see menu](https://x.example/menu)")
    'Your order 2 pizzas, see menu'
    >>> speakable("It's $4.50 (about €4).")
    "It's $4.50 about €4."
    """
    if not isinstance(text, str):
        raise TypeError(f"speakable: expected str, got {type(text).__name__}")
    text = _IMAGE_OR_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    lines = [_strip_line(line) for line in text.splitlines()]
    text = "\n".join(lines)
    text = _CODE.sub(r"\1", text)
    text = _BOLD.sub(r"\2", text)
    text = _STRIKE.sub(r"\1", text)
    text = _EM_STAR.sub(r"\1", text)
    text = _EM_UNDER.sub(r"\1", text)
    text = _HASH.sub("", text)
    text = _STRAY_UNDERSCORE.sub(" ", text)
    # Typographic apostrophes inside words become plain ones; as quote marks they go.
    text = _INNER_APOSTROPHE.sub("'", text).replace("\u2019", "")
    text = text.replace("\u2026", "...")
    text = "".join(ch if _char_ok(ch) else " " for ch in text)
    text = _WHITESPACE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_COMMAS.sub(r"\1", text)
    text = _LEADING_PUNCT.sub("", text.strip())
    return _WHITESPACE.sub(" ", text).strip()


# --- sentence boundaries -------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    """The words of ``text``, split at whitespace."""
    return frozenset(text.split())


# After these a full stop never ends a sentence: titles and forms that always go on.
_NEVER_FINAL: Final = _words(
    """
    mr mrs ms mx dr prof st mt gen col capt cpt lt sgt rev hon fr sen rep gov pres vs v e.g
    i.e cf approx ca fig nos
    """
)
# After these a full stop ends a sentence only when a capital letter or a digit follows.
_ABBREVIATIONS: Final = _words(
    """
    etc a.m p.m inc ltd co corp llc plc jr sr al dept est misc hrs hr mins secs oz lb lbs ft
    yd sq tel ext ave blvd rd
    """
)
# Day and month names, never final ("Tue. March 4", "Mar. 4"); capitalised only, so that
# "I sat." and "the sun." still end at once.
_CAPITALISED: Final = _words(
    """
    Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Mon Tue Tues Wed Thu Thur Thurs Fri Sat
    Sun
    """
)
_CLOSERS: Final = frozenset("\"')]}*_`~\u201d\u2019\u00bb\u203a")
_OPENERS: Final = "\"'([{*_`~\u201c\u2018\u00ab\u2039"
_TERMINAL: Final = frozenset("?!\uff1f\uff01\u3002")
_CLAUSE: Final = frozenset(",;:")
_SKIP_AT_START: Final = frozenset(_CLOSERS | _TERMINAL | _CLAUSE | {".", "\u2026"})

_WAIT: Final = -1  # the boundary depends on text not yet received
_NO: Final = -2  # not a boundary


def _token_before(buf: str, start: int, pos: int) -> str:
    """The run of non-space characters ending at ``pos`` (exclusive), opening marks off."""
    i = pos
    while i > start and not buf[i - 1].isspace():
        i -= 1
    return buf[i:pos].lstrip(_OPENERS)


def _url_like(token: str) -> bool:
    low = token.lower()
    return "://" in low or "@" in low or low.startswith("www.") or low == "www"


def _next_significant(buf: str, pos: int) -> tuple[str, bool]:
    """The first character after ``pos`` that is neither a closer nor a space, and whether
    a line break came first. ``""`` when the text runs out before one."""
    newline = False
    for j in range(pos, len(buf)):
        ch = buf[j]
        if ch == "\n":
            newline = True
        elif not (ch.isspace() or ch in _CLOSERS):
            return ch, newline
    return "", newline


class SentenceChunker:
    """Cuts a streamed reply into speakable sentences, each as soon as its end is settled.

    Parameters
    ----------
    min_chars : int
        A first chunk shorter than this (after cleaning) is held and joined with the next
        one, so the reply does not open on a lone "Sure." when that sounds worse than
        waiting a moment; ``0`` (the default) sends the first sentence the moment it ends.
        Applies to the first chunk of each reply only.
    max_chars : int
        Longest chunk, in characters of the raw text (default 250): a longer sentence is
        cut at a clause (``,`` ``;`` ``:``) or a space. At least 1, and at least
        ``min_chars``.

    Raises
    ------
    TypeError
        If a setting is not an int.
    ValueError
        If ``min_chars`` is negative or ``max_chars`` is below 1 or below ``min_chars``.

    Notes
    -----
    Every chunk is cleaned by :func:`speakable`, stripped, and never empty. The rules for
    where a sentence ends are in the module docstring. The cost is linear in the text:
    each character is looked at a bounded number of times, however it is split.
    """

    __slots__ = ("_buf", "_first", "_held", "_line_start", "_max", "_min", "_pos", "_start")

    def __init__(self, *, min_chars: int = 0, max_chars: int = 250) -> None:
        for name, value in (("min_chars", min_chars), ("max_chars", max_chars)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"SentenceChunker: {name} must be an int, got {type(value).__name__}"
                )
        if min_chars < 0:
            raise ValueError(f"SentenceChunker: min_chars must be >= 0, got {min_chars}")
        if max_chars < 1:
            raise ValueError(f"SentenceChunker: max_chars must be >= 1, got {max_chars}")
        if max_chars < min_chars:
            raise ValueError(
                f"SentenceChunker: max_chars must be >= min_chars ({min_chars}), got {max_chars}"
            )
        self._min = min_chars
        self._max = max_chars
        self._buf = ""
        self._start = 0  # where the current sentence starts in _buf
        self._pos = 0  # next character to look at
        self._line_start = True  # the current sentence starts a line
        self._held = ""  # a short first chunk waiting for the next one
        self._first = True  # no chunk of this reply sent yet

    @property
    def min_chars(self) -> int:
        """Shortest first chunk (see the class docstring)."""
        return self._min

    @property
    def max_chars(self) -> int:
        """Longest chunk, in raw characters."""
        return self._max

    @property
    def pending(self) -> str:
        """Text received but not yet in a chunk (raw, as pushed)."""
        held = f"{self._held} " if self._held else ""
        return held + self._buf[self._start :]

    def push(self, delta: str) -> list[str]:
        """Add the next piece of the reply; return the chunks it settles (often none)."""
        if not isinstance(delta, str):
            raise TypeError(f"SentenceChunker.push: expected str, got {type(delta).__name__}")
        if not delta:
            return []
        self._buf += delta
        return self._scan(final=False)

    def flush(self) -> list[str]:
        """The reply is complete: return every chunk still pending, and start afresh."""
        out = self._scan(final=True)
        rest = self._buf[self._start :]
        self._emit(rest, out)
        if self._held:
            out.append(self._held)
        self.reset()
        return out

    def reset(self) -> None:
        """Drop everything pending (a barge-in) and start a new reply."""
        self._buf = ""
        self._start = 0
        self._pos = 0
        self._line_start = True
        self._held = ""
        self._first = True

    # -- internals ----------------------------------------------------------------------

    def _emit(self, raw: str, out: list[str]) -> None:
        text = speakable(raw)
        if not text:
            return
        if self._first:
            if self._held:
                text = f"{self._held} {text}"
                self._held = ""
            if len(text) < self._min:
                self._held = text
                return
            self._first = False
        out.append(text)

    def _skip_start(self) -> None:
        """Move the sentence start past spaces and the marks a previous end left behind."""
        buf, i = self._buf, self._start
        while i < len(buf) and (buf[i].isspace() or buf[i] in _SKIP_AT_START):
            if buf[i] == "\n":
                self._line_start = True
            i += 1
        self._start = i
        self._pos = max(self._pos, i)

    def _cut(self, end: int, resume: int, out: list[str], *, line_start: bool) -> None:
        self._emit(self._buf[self._start : end], out)
        self._start = resume
        self._pos = resume
        self._line_start = line_start

    def _scan(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            self._skip_start()
            buf, start = self._buf, self._start
            if start >= len(buf):
                break
            end = self._find_end(final)
            if end >= 0:
                self._cut(end, end, out, line_start=buf[end - 1] == "\n")
                continue
            # No sentence end yet. Cut a sentence that has outgrown max_chars, once every
            # boundary that could still end it within the limit is ruled out.
            limit = start + self._max
            if limit <= self._pos < len(buf):
                cut, resume = self._clause_cut(start, limit)
                self._cut(cut, resume, out, line_start=False)
                continue
            break
        if len(self._buf) > 4096 and self._start > len(self._buf) // 2:
            self._buf = self._buf[self._start :]
            self._pos -= self._start
            self._start = 0
        return out

    def _clause_cut(self, start: int, limit: int) -> tuple[int, int]:
        buf = self._buf
        best_space = -1
        for j in range(limit - 1, start, -1):
            ch = buf[j]
            if ch in _CLAUSE and j + 1 < len(buf) and buf[j + 1].isspace():
                return j + 1, j + 1
            if best_space < 0 and ch.isspace():
                best_space = j
        if best_space > start:
            return best_space, best_space
        return limit, limit

    def _find_end(self, final: bool) -> int:
        """Scan on from ``_pos``; return one past the end of the sentence, or -1 (no end in
        the text so far; ``_pos`` is left where scanning must resume)."""
        buf, start = self._buf, self._start
        limit = start + self._max
        brackets = buf.count("[", start, self._pos) - buf.count("]", start, self._pos)
        pos = self._pos
        while pos < len(buf) and pos < limit:
            ch = buf[pos]
            if ch == "[":
                brackets += 1
            elif ch == "]":
                brackets -= 1
            elif ch == "\n":
                return pos + 1
            elif brackets <= 0 and (ch == "." or ch in _TERMINAL):
                verdict = self._full_stop(pos, final) if ch == "." else self._mark(pos, final)
                if verdict == _WAIT:
                    self._pos = pos
                    return -1
                if verdict >= 0:
                    return verdict
            pos += 1
        self._pos = pos
        return -1

    def _mark(self, pos: int, final: bool) -> int:
        """A question or exclamation mark at ``pos``."""
        if not _url_like(_token_before(self._buf, self._start, pos)):
            return pos + 1
        # Inside a URL a "?" starts the query: it ends the sentence only before a space.
        if pos + 1 >= len(self._buf):
            return pos + 1 if final else _WAIT
        return pos + 1 if self._buf[pos + 1].isspace() else _NO

    def _full_stop(self, pos: int, final: bool) -> int:
        """A full stop at ``pos``."""
        buf, start = self._buf, self._start
        if pos > start and buf[pos - 1] in ".\u2026":
            return _NO  # inside an ellipsis
        if pos + 1 < len(buf):
            nxt = buf[pos + 1]
            if nxt == "." or not (
                nxt.isspace() or nxt in _CLOSERS or nxt in _CLAUSE or nxt in _TERMINAL
            ):
                return _NO  # inside a token (3.5, example.com, e.g) or an ellipsis
        token = _token_before(buf, start, pos)
        kind = self._kind(token, pos)
        if kind == "list":
            return _NO
        if kind == "word":
            return pos + 1
        # The rest depends on what follows.
        following, newline = _next_significant(buf, pos + 1)
        if not following:
            return pos + 1 if final or newline else _WAIT
        if newline:
            return pos + 1
        if kind == "never":
            return _NO
        if kind == "initial":
            return _NO if following.isalpha() else pos + 1
        if kind == "abbreviation":
            return pos + 1 if following.isupper() or following.isdigit() else _NO
        # A number: a capital letter starts the next sentence.
        return pos + 1 if following.isupper() else _NO

    def _kind(self, token: str, pos: int) -> str:
        """What the token before a full stop is: word, never, abbreviation, initial,
        number, list (a bullet number opening a line), or url (treated as an
        abbreviation: it may go on)."""
        if not token:
            return "word"
        if token[-1].isdigit():
            if (
                self._line_start
                and pos - len(token) == self._start
                and token.isdigit()
                and len(token) <= 3
            ):
                return "list"
            return "number"
        low = token.lower().rstrip(".")
        if low in _NEVER_FINAL or token.rstrip(".") in _CAPITALISED:
            return "never"
        if _url_like(token) or "." in token:
            return "abbreviation"
        if low in _ABBREVIATIONS:
            return "abbreviation"
        if len(token) == 1 and token.isupper() and token != "I":
            return "initial"
        return "word"

    def __repr__(self) -> str:
        return (
            f"SentenceChunker(min_chars={self._min}, max_chars={self._max}, "
            f"pending={len(self.pending)} chars)"
        )
