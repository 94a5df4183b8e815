"""An offline knowledge base: Markdown and text files, searched with SQLite FTS5.

A voice agent answers questions about one business (opening hours, prices, parking...)
from a folder of short files. :class:`KnowledgeBase` splits each file into passages of
bounded size, indexes them in an SQLite FTS5 table (Python's standard :mod:`sqlite3`,
nothing to install), and :meth:`KnowledgeBase.search` returns the best passages for a
caller's question, ranked by BM25.

>>> kb = KnowledgeBase()
>>> kb.add_text("hours.md", "# Opening hours\\n\\nWe are open Monday to Friday, 8 am to 6 pm.")
1
>>> [(p.source, p.heading) for p in kb.search("when are you open")]
[('hours.md', 'Opening hours')]
>>> kb.close()

Indexing
--------
* :meth:`~KnowledgeBase.add_folder` indexes every ``.md`` and ``.txt`` file under a
  folder (recursively, hidden files and folders skipped, in name order). A file's
  ``source`` is its path relative to the folder (``hours.md``, ``team/dentists.md``).
  A file whose content hash has not changed is skipped; a changed one has its passages
  replaced; a file gone from the folder since it was last added loses its passages.
* Files over :attr:`KnowledgeBase.max_file_bytes`, files with NUL bytes (not text) and
  files past the passage bound are skipped and counted in :attr:`KnowledgeBase.dropped`;
  bytes that are not UTF-8 are replaced (U+FFFD).

Chunking
--------
Blank lines split a file into blocks; a Markdown heading (``#`` to ``######``) starts a
new section, and its text is the passages' ``heading`` (it is indexed, with twice the
weight of body text, but not repeated in the passage text). Consecutive blocks of a
section are merged while the passage stays within ``max_passage_chars`` (800); a longer
block is cut at sentence ends, then at spaces, then anywhere. A passage's ``text`` is
exactly ``content[position:position + len(text)]``: the span of the source it came from.

Ranking
-------
The query is cut to :data:`MAX_QUERY_CHARS`, split into words (letters and digits only,
so FTS5 syntax in it is inert), stop words and duplicates are dropped, and at most
:data:`MAX_QUERY_TERMS` words are kept. Each word is quoted and the words are ORed; the
Porter stemmer matches ``prices`` with ``price``. For words a speech recogniser may have
misheard, indexed words that are close in spelling (:func:`difflib.get_close_matches`,
ratio 0.8, same first letter, length within 3) are ORed in too, while the index holds at
most 100,000 distinct words. FTS5's ``bm25()`` orders the matches;
:attr:`Passage.score` is its negation, so higher is better.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import hashlib
import os
import re
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from voxwire.errors import VoxwireError
from voxwire.services.base import ToolSpec

__all__ = [
    "DEFAULT_DB",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "STOP_WORDS",
    "KnowledgeBase",
    "KnowledgeError",
    "Passage",
    "chunk_text",
    "format_passages",
    "knowledge_hook",
    "knowledge_main",
    "parse_passages",
    "query_terms",
    "search_spec",
    "search_tool",
]

DEFAULT_DB = "voxwire-knowledge.db"
"""The database file ``voxwire knowledge`` uses when no ``--db`` is given."""

MAX_QUERY_CHARS = 1000
"""A query is cut to this many characters before it is split into words."""

MAX_QUERY_TERMS = 16
"""At most this many distinct words of a query are searched for."""

MAX_K = 50
"""The most passages one search returns."""

_FUZZY_VOCAB_LIMIT = 100_000
_FUZZY_CUTOFF = 0.8
_FUZZY_MATCHES = 2

STOP_WORDS: frozenset[str] = frozenset(
    str.split(
        """
    a about am an and any anything are as at be been but by can could did do does doing
    for from get got had has have hello hey hi how i i'd i'm id if im in is it its it's
    just know let like me might my need of oh ok okay on or please should so some tell
    than thank thanks that the their them then there these they this those to uh um us
    want was we were what whats when where which who whom why will with would yeah yes
    you your
    """
    )
)
"""Words a query drops: function words, and the fillers and politeness of speech."""

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_BLANK_SPLIT = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?]['\")\]]*\s+")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    source TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    chars INTEGER NOT NULL,
    passages INTEGER NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(
    text, heading, source UNINDEXED, position UNINDEXED,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_vocab USING fts5vocab(passages, 'row');
"""


class KnowledgeError(VoxwireError, RuntimeError):
    """The knowledge base cannot work: no FTS5 in this SQLite, or a database not its own."""


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage of a source file.

    ``position`` is the character offset of ``text`` in the source's content; ``score``
    is the negated BM25 rank of a search (higher is better; 0.0 outside a search).
    """

    source: str
    heading: str
    position: int
    text: str
    score: float = 0.0


def chunk_text(
    text: str, *, max_chars: int = 800, markdown: bool = True
) -> list[tuple[str, int, str]]:
    """Split ``text`` into passages: ``(heading, position, passage_text)`` tuples.

    See the module docstring (Chunking). Every passage text is at most ``max_chars``
    long and equals ``text[position:position + len(passage_text)]``.

    >>> chunk_text("# Parking\\n\\nFree parking behind the clinic.\\n\\nTwo bays are wide.")
    [('Parking', 11, 'Free parking behind the clinic.\\n\\nTwo bays are wide.')]
    """
    if max_chars < 40:
        raise ValueError(f"max_chars must be at least 40, got {max_chars}")
    out: list[tuple[str, int, str]] = []
    heading = ""
    start = -1  # start of the passage being built, -1 when none
    end = 0

    def emit() -> None:
        nonlocal start
        if start >= 0:
            out.append((heading, start, text[start:end]))
        start = -1

    for b_start, b_end in _blocks(text):
        for kind, s_start, s_end in _segments(text, b_start, b_end, markdown):
            if kind == "heading":
                emit()
                match = _HEADING.match(text[s_start:s_end])
                heading = match.group(2).strip()[:200] if match else ""
                continue
            if markdown and _is_rule(text[s_start:s_end]):
                continue
            for p_start, p_end in _split_long(text, s_start, s_end, max_chars):
                if start >= 0 and p_end - start <= max_chars:
                    end = p_end
                    continue
                emit()
                start, end = p_start, p_end
    emit()
    return out


def _segments(text: str, start: int, end: int, markdown: bool) -> Iterator[tuple[str, int, int]]:
    """A block's heading lines and the text spans between them: ``(kind, start, end)``."""
    if not markdown:
        yield "text", start, end
        return
    pos = start
    seg = -1
    while pos < end:
        line_end = text.find("\n", pos, end)
        if line_end < 0:
            line_end = end
        if _HEADING.match(text[pos:line_end]):
            if seg >= 0:
                yield "text", seg, _rstrip(text, seg, pos)
            yield "heading", pos, line_end
            seg = -1
        elif seg < 0:
            seg = pos
            while text[seg].isspace():
                seg += 1
        pos = line_end + 1
    if seg >= 0:
        yield "text", seg, _rstrip(text, seg, end)


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _blocks(text: str) -> Iterator[tuple[int, int]]:
    """Spans of the non-blank blocks between blank lines, stripped of outer whitespace."""
    pos = 0
    for match in _BLANK_SPLIT.finditer(text + "\n\n"):
        seg_start, seg_end = pos, match.start()
        pos = match.end()
        segment = text[seg_start:seg_end]
        stripped = segment.strip()
        if not stripped:
            continue
        lead = len(segment) - len(segment.lstrip())
        yield seg_start + lead, seg_start + lead + len(stripped)


def _is_rule(block: str) -> bool:
    return len(block) >= 3 and set(block.replace(" ", "")) <= {"-"} | {"*"} | {"_"}


def _split_long(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Cut ``text[start:end]`` into spans of at most ``max_chars``: sentences, words, any."""
    while end - start > max_chars:
        limit = start + max_chars
        cut = -1
        for match in _SENTENCE_END.finditer(text, start, limit + 1):
            if match.start() + 1 > start + max_chars // 4:
                cut = match.start() + 1
        if cut < 0:
            space = text.rfind(" ", start + max_chars // 4, limit)
            cut = space if space > start else limit
        cut = min(cut, limit)
        yield start, cut
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        yield start, end


def query_terms(query: str) -> list[str]:
    """The words of ``query`` a search looks for (see Ranking in the module docstring).

    >>> query_terms('What are your "opening" hours? AND NOT *')
    ['opening', 'hours', 'not']
    """
    words = _WORD.findall(query[:MAX_QUERY_CHARS].lower())
    seen: dict[str, None] = {}
    for word in words:
        if word not in STOP_WORDS and word not in seen:
            seen[word] = None
            if len(seen) == MAX_QUERY_TERMS:
                break
    return list(seen)


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class KnowledgeBase:
    """Passages of a business's files, searched by BM25 (see the module docstring).

    Parameters
    ----------
    path
        The SQLite database file, created if missing; ``":memory:"`` (the default) keeps
        everything in memory for the object's life.
    max_passage_chars
        The longest passage, in characters (40 or more).
    max_file_bytes
        Larger files are skipped (``dropped["too_large"]``).
    max_passages
        The most passages the base holds; a file that would pass it is skipped
        (``dropped["full"]``).
    max_files
        The most files one :meth:`add_folder` reads; the files after it in name order
        are skipped (``dropped["too_many_files"]``).

    Raises
    ------
    KnowledgeError
        When this SQLite has no FTS5, or ``path`` is a database of another schema.

    Notes
    -----
    One object may be used from several threads (a lock serialises them), so
    :func:`search_tool` runs searches off the event loop.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        max_passage_chars: int = 800,
        max_file_bytes: int = 1 << 20,
        max_passages: int = 100_000,
        max_files: int = 10_000,
    ) -> None:
        if max_passage_chars < 40:
            raise ValueError(f"max_passage_chars must be at least 40, got {max_passage_chars}")
        if max_file_bytes < 1 or max_passages < 1 or max_files < 1:
            raise ValueError(
                f"max_file_bytes, max_passages and max_files must be positive, got "
                f"{max_file_bytes}, {max_passages} and {max_files}"
            )
        self.path = str(path)
        self.max_passage_chars = max_passage_chars
        self.max_file_bytes = max_file_bytes
        self.max_passages = max_passages
        self.max_files = max_files
        self.dropped: Counter[str] = Counter()
        """Files skipped, by reason: ``too_large``, ``not_text``, ``full``, ``unreadable``,
        ``too_many_files``."""
        self._lock = threading.Lock()
        self._vocab: dict[tuple[str, int], list[str]] | None = None
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            _check_fts5(self._db)
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "SELECT source, folder, sha256, chars, passages FROM documents LIMIT 0"
            )
            self._db.execute("SELECT text, heading, source, position FROM passages LIMIT 0")
        except KnowledgeError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise KnowledgeError(
                f"{self.path!r} is not a voxwire knowledge database ({exc})"
            ) from exc

    # --- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; the object cannot be used after."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- indexing ----------------------------------------------------------------------

    def add_folder(self, folder: str | Path) -> int:
        """Index the ``.md`` and ``.txt`` files under ``folder``; return how many changed.

        Unchanged files (same content hash) are skipped; files no longer in the folder
        lose their passages. Raises :class:`NotADirectoryError` if ``folder`` is not one.
        """
        root = Path(folder)
        if not root.is_dir():
            raise NotADirectoryError(f"expected a folder of .md/.txt files, got {str(root)!r}")
        key = str(root.resolve())
        changed = 0
        seen: set[str] = set()
        for count, file in enumerate(_text_files(root)):
            source = file.relative_to(root).as_posix()
            if count >= self.max_files:
                self.dropped["too_many_files"] += 1
                continue
            seen.add(source)
            try:
                size = file.stat().st_size
                if size > self.max_file_bytes:
                    self.dropped["too_large"] += 1
                    continue
                data = file.read_bytes()[: self.max_file_bytes + 1]
            except OSError:
                self.dropped["unreadable"] += 1
                continue
            if len(data) > self.max_file_bytes:
                self.dropped["too_large"] += 1
                continue
            if b"\x00" in data:
                self.dropped["not_text"] += 1
                continue
            text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
            if self._store(source, text, folder=key) is not None:
                changed += 1
        with self._lock, self._db:
            rows = self._db.execute(
                "SELECT source FROM documents WHERE folder = ?", (key,)
            ).fetchall()
            for (source,) in rows:
                if source not in seen:
                    self._delete(source)
                    changed += 1
            self._vocab = None
        return changed

    def add_text(self, source: str, text: str) -> int:
        """Index ``text`` under the name ``source``; return its passage count.

        The same text under the same name again is skipped (returns 0); other text under
        that name replaces its passages. ``source`` ending in ``.txt`` is plain text,
        anything else Markdown.
        """
        if not isinstance(source, str) or not isinstance(text, str):
            raise TypeError(
                f"source and text must be str, got {type(source).__name__} and "
                f"{type(text).__name__}"
            )
        if not source or len(source) > 500:
            raise ValueError(f"source must be 1 to 500 characters, got {len(source)}")
        if len(text.encode("utf-8", errors="replace")) > self.max_file_bytes:
            raise ValueError(
                f"text must be at most {self.max_file_bytes} bytes, got "
                f"{len(text.encode('utf-8', errors='replace'))}"
            )
        stored = self._store(source, text.replace("\r\n", "\n"), folder="")
        return stored or 0

    def remove(self, source: str) -> bool:
        """Drop ``source``'s passages; return whether it was there."""
        with self._lock, self._db:
            found = self._delete(source)
            self._vocab = None
        return found

    def _store(self, source: str, text: str, *, folder: str) -> int | None:
        digest = hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()
        chunks = chunk_text(
            text, max_chars=self.max_passage_chars, markdown=not source.endswith(".txt")
        )
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT sha256, passages FROM documents WHERE source = ?", (source,)
            ).fetchone()
            if row is not None and row[0] == digest:
                return None
            held = self._db.execute("SELECT count(*) FROM passages").fetchone()[0]
            held -= row[1] if row is not None else 0
            if held + len(chunks) > self.max_passages:
                self.dropped["full"] += 1
                return None
            self._delete(source)
            self._db.executemany(
                "INSERT INTO passages (text, heading, source, position) VALUES (?, ?, ?, ?)",
                [(body, heading, source, pos) for heading, pos, body in chunks],
            )
            self._db.execute(
                "INSERT INTO documents (source, folder, sha256, chars, passages) "
                "VALUES (?, ?, ?, ?, ?)",
                (source, folder, digest, len(text), len(chunks)),
            )
            self._vocab = None
        return len(chunks)

    def _delete(self, source: str) -> bool:
        self._db.execute("DELETE FROM passages WHERE source = ?", (source,))
        return self._db.execute("DELETE FROM documents WHERE source = ?", (source,)).rowcount > 0

    # --- reading -----------------------------------------------------------------------

    def sources(self) -> list[tuple[str, int]]:
        """Every indexed source with its passage count, in name order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT source, passages FROM documents ORDER BY source"
            ).fetchall()
        return [(str(s), int(n)) for s, n in rows]

    def __len__(self) -> int:
        """The number of passages held."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM passages").fetchone()[0])

    def search(
        self, query: str, k: int = 3, max_chars: int = 1500, *, fuzzy: bool = True
    ) -> list[Passage]:
        """The best passages for ``query``, best first (see Ranking in the module docstring).

        At most ``k`` passages (1 to 50), together at most ``max_chars`` characters of
        text: passages are taken in rank order while they fit, and the first one is cut
        to ``max_chars`` if it alone is longer. No word to look for gives ``[]``; FTS5
        syntax in ``query`` is never interpreted.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be str, got {type(query).__name__}")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be 1 to {MAX_K}, got {k}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be positive, got {max_chars}")
        terms = query_terms(query)
        if not terms:
            return []
        with self._lock:
            if fuzzy:
                terms = self._expand(terms)
            match = " OR ".join(_quote(t) for t in terms)
            rows = self._db.execute(
                "SELECT source, heading, position, text, bm25(passages, 1.0, 2.0) AS rank "
                "FROM passages WHERE passages MATCH ? ORDER BY rank, rowid LIMIT ?",
                (match, k),
            ).fetchall()
        out: list[Passage] = []
        used = 0
        for source, heading, position, text, rank in rows:
            body = str(text)
            if not out and len(body) > max_chars:
                body = body[:max_chars]
            elif used + len(body) > max_chars:
                break
            used += len(body)
            out.append(Passage(str(source), str(heading), int(position), body, -float(rank)))
        return out

    def _expand(self, terms: list[str]) -> list[str]:
        """Add indexed words close in spelling to each query word (the lock is held).

        Only indexed words with the same first letter and a length within 3 are compared
        (a recogniser rarely misses the first sound), and none for a word indexed as is.
        """
        if self._vocab is None:
            count = self._db.execute("SELECT count(*) FROM passages_vocab").fetchone()[0]
            self._vocab = {}
            if count <= _FUZZY_VOCAB_LIMIT:
                for (term,) in self._db.execute("SELECT term FROM passages_vocab"):
                    word = str(term)
                    self._vocab.setdefault((word[:1], len(word)), []).append(word)
        if not self._vocab:
            return terms
        out = dict.fromkeys(terms)
        for term in terms:
            if len(term) < 4 or term.isdigit() or term in self._vocab.get((term[0], len(term)), ()):
                continue
            candidates = [
                word
                for size in range(len(term) - 3, len(term) + 4)
                for word in self._vocab.get((term[0], size), ())
            ]
            for close in difflib.get_close_matches(
                term, candidates, n=_FUZZY_MATCHES, cutoff=_FUZZY_CUTOFF
            ):
                out.setdefault(close)
        return list(out)


def _check_fts5(db: sqlite3.Connection) -> None:
    try:
        db.execute("CREATE VIRTUAL TABLE temp._voxwire_fts5_probe USING fts5(x)")
        db.execute("DROP TABLE temp._voxwire_fts5_probe")
    except sqlite3.OperationalError as exc:
        raise KnowledgeError(
            f"the knowledge base needs SQLite with FTS5; this Python's SQLite "
            f"{sqlite3.sqlite_version} has none ({exc})"
        ) from exc


def _text_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if name.lower().endswith((".md", ".txt")):
                path = Path(dirpath, name)
                if path.is_file():
                    yield path


# --- the search tool -------------------------------------------------------------------

_SOURCE_LINE = re.compile(r"^\[(\d+)\] Source: (.+?)(?: \| Section: (.*))?$", re.MULTILINE)


def search_spec() -> ToolSpec:
    """The ``search_knowledge`` tool: what a language model is told about the search."""
    return ToolSpec(
        name="search_knowledge",
        description=(
            "Search the business's own information (opening hours, address, prices, "
            "services, parking, policies). Returns the best passages with their source "
            "file; answer from them and say which file the answer comes from."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "description": "What to look for, in a few words, e.g. 'opening hours'.",
                    "minLength": 1,
                    "maxLength": MAX_QUERY_CHARS,
                }
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    )


def format_passages(passages: Sequence[Passage]) -> str:
    """Passages as the text a language model reads, one numbered block each.

    >>> print(format_passages([Passage("hours.md", "Opening hours", 0, "Open 8 to 6.")]))
    [1] Source: hours.md | Section: Opening hours
    Open 8 to 6.
    """
    if not passages:
        return "No passages matched the query."
    blocks = []
    for n, p in enumerate(passages, 1):
        head = f"[{n}] Source: {p.source}" + (f" | Section: {p.heading}" if p.heading else "")
        blocks.append(f"{head}\n{p.text}")
    return "\n\n".join(blocks)


def parse_passages(text: str) -> list[Passage]:
    """The passages in a :func:`format_passages` text, in order (``score`` 0.0).

    Text with no block gives ``[]``; it never raises.
    """
    if not isinstance(text, str):
        return []
    marks = list(_SOURCE_LINE.finditer(text[:100_000]))
    out = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end() : end].strip()
        out.append(Passage(mark.group(2).strip(), (mark.group(3) or "").strip(), 0, body))
    return out


async def search_tool(kb: KnowledgeBase, query: str, k: int = 3, max_chars: int = 1500) -> str:
    """Run the ``search_knowledge`` tool: the passages for ``query`` as text, with sources.

    The search runs in a worker thread, off the event loop. A non-string or empty query
    gives a short message saying so, never an exception.
    """
    if not isinstance(query, str) or not query.strip():
        return "The query was empty: say what to look for."
    passages = await asyncio.to_thread(kb.search, query, k, max_chars)
    return format_passages(passages)


def knowledge_hook(
    kb: KnowledgeBase, k: int = 2, max_chars: int = 1200
) -> Callable[[str], Awaitable[str]]:
    """The voice agent's knowledge hook on ``kb``: ``VoiceAgent(..., knowledge=hook)``.

    On every caller turn the agent awaits ``hook(text)`` (bounded by its
    ``retrieve_timeout``) and gives the model what it returns as context: the best ``k``
    passages, at most ``max_chars`` in all, with their sources; nothing when nothing
    matches.
    """

    async def hook(text: str) -> str:
        passages = await asyncio.to_thread(kb.search, text, k, max_chars)
        return format_passages(passages) if passages else ""

    return hook


# --- command line ----------------------------------------------------------------------


def _knowledge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxwire knowledge",
        description="Index a folder of .md/.txt files and search it, as the voice agent does.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="index (or re-index) the .md and .txt files in DIR")
    add.add_argument("dir", metavar="DIR")
    add.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    search = sub.add_parser("search", help="print the best passages for QUERY")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--db", default=DEFAULT_DB, help=f"database file (default {DEFAULT_DB})")
    search.add_argument(
        "-k", type=int, default=3, metavar="N", help=f"passages to print, 1 to {MAX_K} (3)"
    )
    return parser


def knowledge_main(argv: Sequence[str]) -> int:
    """Run ``voxwire knowledge add DIR`` or ``voxwire knowledge search QUERY``.

    Returns the exit status: 0 on success, 1 when a search matched nothing, 2 for bad
    arguments, a missing folder or database, or a database that cannot be used.
    """
    try:
        args = _knowledge_parser().parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.action == "search" and not 1 <= args.k <= MAX_K:
        print(f"voxwire knowledge: -k must be 1 to {MAX_K}, got {args.k}", file=sys.stderr)
        return 2
    if args.action == "search" and args.db != ":memory:" and not Path(args.db).is_file():
        print(
            f"voxwire knowledge: no database {args.db!r}; run 'voxwire knowledge add DIR' first",
            file=sys.stderr,
        )
        return 2
    try:
        kb = KnowledgeBase(args.db)
    except (KnowledgeError, sqlite3.Error) as exc:
        print(f"voxwire knowledge: {exc}", file=sys.stderr)
        return 2
    with kb:
        if args.action == "add":
            try:
                changed = kb.add_folder(args.dir)
            except NotADirectoryError as exc:
                print(f"voxwire knowledge: {exc}", file=sys.stderr)
                return 2
            sources = kb.sources()
            print(
                f"{changed} file(s) indexed or removed; {args.db} holds "
                f"{len(sources)} file(s), {len(kb)} passage(s)"
            )
            for reason, count in sorted(kb.dropped.items()):
                print(f"skipped {count} file(s): {reason}")
            return 0
        passages = kb.search(args.query, k=args.k)
        if not passages:
            print("no passage matched")
            return 1
        for n, p in enumerate(passages, 1):
            where = f"{p.source} @ {p.position}" + (f", {p.heading}" if p.heading else "")
            print(f"[{n}] {where} (score {p.score:.3f})")
            print(p.text)
            print()
        return 0
