"""The knowledge base: chunking, indexing, BM25 search, hostile queries, the tool, the CLI."""

from __future__ import annotations

import asyncio
import doctest
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voxwire.knowledge
from voxwire.agents.booking import DEMO_KNOWLEDGE
from voxwire.errors import VoxwireError
from voxwire.knowledge import (
    DEFAULT_DB,
    MAX_QUERY_TERMS,
    KnowledgeBase,
    KnowledgeError,
    Passage,
    chunk_text,
    format_passages,
    knowledge_main,
    parse_passages,
    query_terms,
    search_spec,
    search_tool,
)


@pytest.fixture
def kb() -> Iterator[KnowledgeBase]:
    with KnowledgeBase() as base:
        yield base


@pytest.fixture
def demo() -> Iterator[KnowledgeBase]:
    with KnowledgeBase() as base:
        assert base.add_folder(DEMO_KNOWLEDGE) == 5
        yield base


# --- chunking ----------------------------------------------------------------------------


def test_chunks_keep_headings_positions_and_merge_short_paragraphs() -> None:
    text = (
        "# Clinic\n\nIntro line.\n\n## Parking\nFree bays behind.\n\nTwo are wide.\n\n"
        "## Buses\n\nLine 4 stops here.\n"
    )
    chunks = chunk_text(text)
    assert [(h, body) for h, _, body in chunks] == [
        ("Clinic", "Intro line."),
        ("Parking", "Free bays behind.\n\nTwo are wide."),
        ("Buses", "Line 4 stops here."),
    ]
    for _, pos, body in chunks:
        assert text[pos : pos + len(body)] == body


def test_a_heading_inside_a_block_starts_a_section() -> None:
    text = "Intro.\n## Parking\nBehind the clinic.\n### Bays\n  Two are wide.\n# Empty\n"
    chunks = chunk_text(text)
    assert [(h, body) for h, _, body in chunks] == [
        ("", "Intro."),
        ("Parking", "Behind the clinic."),
        ("Bays", "Two are wide."),
    ]
    for _, pos, body in chunks:
        assert text[pos : pos + len(body)] == body


def test_long_paragraphs_are_cut_at_sentence_ends_then_spaces_then_anywhere() -> None:
    sentences = " ".join(f"Sentence number {i} is here." for i in range(60))
    chunks = chunk_text(sentences, max_chars=200)
    assert len(chunks) > 5
    assert all(len(body) <= 200 for _, _, body in chunks)
    assert all(body.endswith(".") for _, _, body in chunks)
    words = " ".join(["word"] * 300)
    assert all(not b.startswith(" ") for _, _, b in chunk_text(words, max_chars=100))
    blob = "x" * 1000
    assert [len(b) for _, _, b in chunk_text(blob, max_chars=300)] == [300, 300, 300, 100]


def test_plain_text_has_no_headings_and_rules_are_dropped() -> None:
    assert chunk_text("# not a heading\n\ntext", markdown=False) == [
        ("", 0, "# not a heading\n\ntext")
    ]
    assert [b for _, _, b in chunk_text("above\n\n---\n\nbelow", max_chars=40)] == [
        "above\n\n---\n\nbelow"
    ]
    assert chunk_text("# Only a heading\n\n---\n") == []
    with pytest.raises(ValueError, match="at least 40"):
        chunk_text("x", max_chars=10)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("ab #.\n\t-é"), max_size=1500),
    st.integers(min_value=40, max_value=300),
)
def test_chunks_are_bounded_spans_of_the_source(text: str, max_chars: int) -> None:
    last = -1
    for _, pos, body in chunk_text(text, max_chars=max_chars):
        assert 0 < len(body) <= max_chars
        assert text[pos : pos + len(body)] == body
        assert pos > last
        last = pos
    # plain text: every non-space character is in exactly one passage, in order
    plain = chunk_text(text, max_chars=max_chars, markdown=False)
    assert "".join("".join(b.split()) for _, _, b in plain) == "".join(text.split())


# --- indexing ----------------------------------------------------------------------------


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_add_folder_indexes_md_and_txt_and_skips_unchanged(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    write(tmp_path, "hours.md", "# Hours\n\nOpen weekdays from eight.")
    write(tmp_path, "sub/team.txt", "Dr Okafor leads the team.")
    write(tmp_path, "notes.pdf", "not indexed")
    write(tmp_path, ".hidden.md", "secret words")
    write(tmp_path, ".git/config.md", "secret words")
    assert kb.add_folder(tmp_path) == 2
    assert kb.sources() == [("hours.md", 1), ("sub/team.txt", 1)]
    assert kb.add_folder(tmp_path) == 0  # same hashes: nothing rewritten
    assert kb.search("secret") == []
    (hit,) = kb.search("who leads the team")
    assert (hit.source, hit.heading, hit.position) == ("sub/team.txt", "", 0)


def test_a_changed_file_replaces_its_passages_and_a_removed_one_is_dropped(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    write(tmp_path, "prices.md", "A cleaning costs 90 dollars.")
    write(tmp_path, "gone.md", "Zebra crossings outside.")
    kb.add_folder(tmp_path)
    write(tmp_path, "prices.md", "A whitening costs 350 dollars.")
    (tmp_path / "gone.md").unlink()
    assert kb.add_folder(tmp_path) == 2
    assert kb.search("cleaning") == []
    assert kb.search("zebra") == []
    assert [p.text for p in kb.search("whitening")] == ["A whitening costs 350 dollars."]
    assert len(kb) == 1


def test_files_too_large_or_not_text_are_skipped_and_counted(tmp_path: Path) -> None:
    write(tmp_path, "big.md", "word " * 300)
    write(tmp_path, "binary.md", b"PK\x03\x04\x00\x00 zip data")
    write(tmp_path, "latin1.md", "caf\xe9 au lait".encode("latin-1"))
    with KnowledgeBase(max_file_bytes=1000) as kb:
        assert kb.add_folder(tmp_path) == 1
        assert kb.dropped == {"too_large": 1, "not_text": 1}
        (hit,) = kb.search("lait")
        assert hit.text == "caf\ufffd au lait"


def test_the_passage_bound_holds(tmp_path: Path) -> None:
    with KnowledgeBase(max_passages=3, max_passage_chars=40) as kb:
        assert kb.add_text("a.md", "one\n\n# b\n\ntwo") == 2
        assert kb.add_text("c.md", "# x\n\nthree\n\n# y\n\nfour") is not None
        assert kb.dropped["full"] == 1
        assert len(kb) == 2
        # replacing a file counts its old passages as free
        assert kb.add_text("a.md", "one\n\n# b\n\ntwo\n\n# c\n\nthree") == 3


def test_one_folder_reads_at_most_max_files(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path, f"f{i}.md", f"file number {i}")
    with KnowledgeBase(max_files=3) as kb:
        assert kb.add_folder(tmp_path) == 3
        assert [s for s, _ in kb.sources()] == ["f0.md", "f1.md", "f2.md"]
        assert kb.dropped["too_many_files"] == 2
    with pytest.raises(ValueError, match="must be positive"):
        KnowledgeBase(max_files=0)


def test_searches_from_many_threads(demo: KnowledgeBase) -> None:
    questions = ["parking", "opening hours", "prices", "cancellation"] * 25
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda q: demo.search(q)[0].source, questions))
    assert results == ["location.md", "hours.md", "prices.md", "policies.md"] * 25


def test_add_text_validates(kb: KnowledgeBase) -> None:
    assert kb.add_text("faq.md", "# Faq\n\nWe speak Spanish.") == 1
    assert kb.add_text("faq.md", "# Faq\n\nWe speak Spanish.") == 0
    assert kb.remove("faq.md") is True
    assert kb.remove("faq.md") is False
    with pytest.raises(TypeError, match="must be str"):
        kb.add_text("faq.md", b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 500"):
        kb.add_text("", "x")
    with pytest.raises(ValueError, match="at most"):
        kb.add_text("huge.md", "x" * (kb.max_file_bytes + 1))
    with pytest.raises(NotADirectoryError):
        kb.add_folder("/nonexistent/folder")


def test_a_database_file_persists_and_foreign_files_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "kb.db"
    with KnowledgeBase(db) as kb:
        kb.add_folder(DEMO_KNOWLEDGE)
    with KnowledgeBase(db) as kb:
        assert kb.add_folder(DEMO_KNOWLEDGE) == 0
        assert kb.search("parking")[0].source == "location.md"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(KnowledgeError, match="not a voxwire knowledge database"):
        KnowledgeBase(junk)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE documents (id INTEGER)")
    conn.close()
    with pytest.raises(KnowledgeError, match="not a voxwire knowledge database"):
        KnowledgeBase(other)


class _NoFts5(sqlite3.Connection):
    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if "fts5" in sql.lower():
            raise sqlite3.OperationalError("no such module: fts5")
        return super().execute(sql, *args)


def test_sqlite_without_fts5_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sqlite3.connect

    def connect(path: str, **kwargs: Any) -> sqlite3.Connection:
        return real(path, factory=_NoFts5, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    with pytest.raises(KnowledgeError, match="needs SQLite with FTS5") as exc:
        KnowledgeBase()
    assert isinstance(exc.value, VoxwireError)


# --- search ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "source", "heading"),
    [
        ("what are your opening hours", "hours.md", "Opening hours"),
        ("are you open on saturday", "hours.md", "Opening hours"),
        ("is there parking", "location.md", "Parking"),
        ("what is your address", "location.md", "Address and directions"),
        ("how much does whitening cost", "prices.md", "Prices"),
        ("do you take insurance", "prices.md", "Payment and insurance"),
        ("what is the cancellation policy", "policies.md", "Cancellation policy"),
        ("i have a toothache it is an emergency", "services.md", "Emergency care"),
        ("which bus goes there", "location.md", "Public transport"),
        ("who are the dentists", "services.md", "Our team"),
    ],
)
def test_the_demo_questions_find_their_passage(
    demo: KnowledgeBase, question: str, source: str, heading: str
) -> None:
    best = demo.search(question)[0]
    assert (best.source, best.heading) == (source, heading)


def test_results_are_ranked_bounded_and_stemmed(demo: KnowledgeBase) -> None:
    hits = demo.search("prices of fillings", k=5, max_chars=5000)
    assert hits[0].source == "prices.md"  # "prices"/"fillings" match "price"/"filling"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.score > 0 for h in hits)
    assert len(demo.search("dollars", k=1)) == 1
    short = demo.search("dollars", k=5, max_chars=700)
    assert sum(len(h.text) for h in short) <= 700
    (cut,) = demo.search("dollars", k=5, max_chars=50)
    assert len(cut.text) == 50
    with pytest.raises(ValueError, match="k must be"):
        demo.search("x", k=0)
    with pytest.raises(ValueError, match="k must be"):
        demo.search("x", k=51)
    with pytest.raises(ValueError, match="max_chars"):
        demo.search("x", max_chars=0)
    with pytest.raises(TypeError):
        demo.search(b"x")  # type: ignore[arg-type]


def test_misheard_words_match_close_indexed_words(demo: KnowledgeBase) -> None:
    assert demo.search("parkin", fuzzy=False) == []
    assert demo.search("parkin")[0].heading == "Parking"
    assert demo.search("cancelation")[0].source == "policies.md"
    assert demo.search("hygenist")[0].source in {"prices.md", "services.md"}


def test_query_terms_drop_stop_words_syntax_and_duplicates() -> None:
    assert query_terms("What are the PRICES, the prices?") == ["prices"]
    assert query_terms('"" * ^ : ( ) NEAR(a b) col:x') == ["near", "b", "col", "x"]
    assert query_terms("uh um please") == []
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_QUERY_TERMS


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '""',
        "AND OR NOT",
        "*",
        "NEAR(",
        "NEAR(parking hours, 2)",
        "text: parking",
        "source:hours.md",
        "{text heading}: parking",
        "^parking",
        "parking*",
        "'; DROP TABLE passages; --",
        "\x00\x01\x02",
        "\ud800 lone surrogate",
        "日本語のテキスト 駐車場",
        "parking " * 1300,  # 10 kB
        "x" * 10_000,
        " ".join(["AND"] * 3000),
        "",
        "   \n\t ",
    ],
)
def test_hostile_queries_never_raise(demo: KnowledgeBase, query: str) -> None:
    hits = demo.search(query)
    assert isinstance(hits, list)
    assert all(isinstance(h, Passage) for h in hits)
    assert len(demo) == 13  # nothing was dropped either


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_safe_query(query: str) -> None:
    with KnowledgeBase() as base:
        base.add_text("a.md", "# Hours\n\nOpen from 8 am. Parking behind the clinic.")
        assert len(base.search(query)) <= 1


# --- the tool ----------------------------------------------------------------------------


def test_search_spec_is_a_json_schema_tool() -> None:
    spec = search_spec()
    assert spec.name == "search_knowledge"
    assert spec.parameters["required"] == ["query"]
    assert spec.parameters["properties"]["query"]["type"] == "string"


def test_search_tool_returns_passages_with_sources(demo: KnowledgeBase) -> None:
    text = asyncio.run(search_tool(demo, "where can i park"))
    assert text.startswith("[1] Source: location.md | Section: Parking\n")
    assert "Free parking" in text
    parsed = parse_passages(text)
    assert parsed[0].source == "location.md"
    assert parsed[0].heading == "Parking"
    assert parsed[0].text.startswith("Free parking is available")
    assert asyncio.run(search_tool(demo, "zzzz qqqq")) == "No passages matched the query."
    assert "empty" in asyncio.run(search_tool(demo, "  "))
    assert "empty" in asyncio.run(search_tool(demo, 42))  # type: ignore[arg-type]


def test_format_and_parse_passages_round_trip() -> None:
    passages = [
        Passage("a.md", "Heading (with parens)", 0, "First text.\n\nSecond para."),
        Passage("b.txt", "", 10, "Plain."),
    ]
    back = parse_passages(format_passages(passages))
    assert [(p.source, p.heading, p.text) for p in back] == [
        (p.source, p.heading, p.text) for p in passages
    ]
    assert parse_passages("nothing here") == []
    assert parse_passages(None) == []  # type: ignore[arg-type]


# --- command line ------------------------------------------------------------------------


def test_cli_add_then_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "k.db")
    assert knowledge_main(["add", str(DEMO_KNOWLEDGE), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "5 file(s) indexed" in out
    assert "13 passage(s)" in out
    assert knowledge_main(["search", "is there parking", "--db", db, "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[1] location.md @ ")
    assert "Parking" in out
    assert "[2]" not in out
    assert knowledge_main(["search", "zzzz", "--db", db]) == 1
    assert knowledge_main(["add", str(DEMO_KNOWLEDGE), "--db", db]) == 0
    assert "0 file(s) indexed" in capsys.readouterr().out


def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert knowledge_main(["search", "hours"]) == 2
    assert f"no database {DEFAULT_DB!r}" in capsys.readouterr().err
    assert not (tmp_path / DEFAULT_DB).exists()
    assert knowledge_main(["add", str(tmp_path / "missing")]) == 2
    assert "expected a folder" in capsys.readouterr().err
    assert knowledge_main(["add", str(DEMO_KNOWLEDGE)]) == 0
    assert (tmp_path / DEFAULT_DB).is_file()
    assert knowledge_main(["search", "hours", "-k", "0"]) == 2
    assert knowledge_main(["frobnicate"]) == 2
    assert knowledge_main(["--help"]) == 0
    (tmp_path / "bad.db").write_bytes(b"garbage" * 200)
    assert knowledge_main(["search", "x", "--db", "bad.db"]) == 2
    assert "not a voxwire knowledge database" in capsys.readouterr().err


def test_docstring_examples() -> None:
    result = doctest.testmod(voxwire.knowledge, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5
    assert result.failed == 0


def test_the_knowledge_hook_gives_the_agent_passages_with_sources(demo: KnowledgeBase) -> None:
    from voxwire.knowledge import knowledge_hook

    hook = knowledge_hook(demo, k=1)
    context = asyncio.run(hook("when are you open on saturday"))
    assert "hours.md" in context
    assert "Saturday" in context
    assert asyncio.run(hook("zzzz qqqq")) == ""
