"""``voxwire demo``: the offline agent holds the whole scripted conversation, every run.

One demo call (about 50 s of real time): the greeting, a question answered from the
knowledge folder, a long answer the caller talks over, a booking over three turns and a
goodbye after which the agent hangs up. Real engines: pocketsphinx, espeak-ng, SQLite.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys

import pytest

pytest.importorskip("pocketsphinx", reason="the demo's recogniser is pocketsphinx")
pytest.importorskip("espeakng_loader", reason="the demo speaks with espeak-ng")
pytest.importorskip("websockets", reason="the demo's server needs websockets")

from voxwire.agents.demo import SCRIPT, DemoReport, build_demo, run_demo


@pytest.fixture(scope="module")
def report() -> DemoReport:
    return asyncio.run(run_demo())


def test_the_question_is_answered_from_the_knowledge_file(report: DemoReport) -> None:
    first = report.turns[1]
    assert first.said == SCRIPT[0][0]
    assert "hours.md" in first.agent
    assert "8 am" in first.heard


def test_the_barge_in_leaves_the_history_cut_at_what_was_heard(report: DemoReport) -> None:
    cut = report.turns[2]
    assert cut.interrupted
    assert cut.heard
    assert cut.agent.startswith(cut.heard)
    assert len(cut.heard) < len(cut.agent)
    (last,) = [m for m in report.history_after_barge_in[-1:] if m["role"] == "assistant"]
    assert last["content"] == cut.heard


def test_the_booking_is_in_sqlite(report: DemoReport) -> None:
    # what each turn said, what the recogniser heard and the agent answered, if not
    assert len(report.bookings) == 1, [(t.said, t.stt, t.agent) for t in report.turns]
    (booking,) = report.bookings
    assert booking["name"] == "Maria"
    assert booking["time"] == "15:00"
    assert booking["service"] == "cleaning"
    assert any("confirmation number" in t.heard for t in report.turns)


def test_the_goodbye_ends_the_call(report: DemoReport) -> None:
    assert report.hung_up
    assert report.phone.closed_by_server
    assert "Goodbye" in report.turns[-1].heard
    assert report.errors == {}


def test_every_turn_has_its_stage_timings(report: DemoReport) -> None:
    for turn in report.turns[1:]:
        m = turn.metrics
        assert m is not None
        delays = m.stage_delays()
        assert all(delays[k] is not None for k in ("endpoint", "llm_first_token")), delays
        assert m.first_audio_played is not None
    text = report.text()
    assert "history after the barge-in" in text
    assert "| turn | endpoint |" in text
    json.dumps(report.as_dict())  # plain JSON types


def test_the_bookings_database_is_a_real_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    demo = build_demo(bookings_db=tmp_path / "b.db")
    demo.bookings.book("Sam", "friday", "10 am", "check-up")
    demo.bookings.close()
    demo.knowledge.close()
    rows = sqlite3.connect(tmp_path / "b.db").execute("select count(*) from bookings").fetchone()
    assert rows == (1,)


def test_the_cli_refuses_an_agent_it_cannot_load() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voxwire", "serve", "--protocol", "twilio", "--agent", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot load the agent" in done.stderr
