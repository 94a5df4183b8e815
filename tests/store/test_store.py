"""The conversation stores on their real backends: a SQLite file (also written by
several processes at once) and a redis-server started by the fixture."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.store.conftest import RedisServer, free_port
from voxwire.protocols.events import CallStarted, MediaFormat
from voxwire.store import (
    ConversationStore,
    SqliteStore,
    StoredConversation,
    StoreError,
    call_key,
    decode,
    encode,
    open_store,
)
from voxwire.voice.history import History

Opener = Callable[..., ConversationStore]


def conversation(turns: int = 2, size: int = 20) -> StoredConversation:
    history = History("You are a receptionist.")
    for i in range(turns):
        history.add_user(f"question {i} " + "x" * size)
        history.add_assistant(f"answer {i} " + "y" * size)
    history.add_tool_result("call_1", "book", "booked, id 7")
    return StoredConversation(history, turns=turns, protocol="twilio")


@pytest.fixture(params=["sqlite", "redis"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "sqlite":
        return lambda **kw: SqliteStore(tmp_path / "state.db", **kw)
    server: RedisServer = request.getfixturevalue("redis_server")
    pytest.importorskip("redis", reason="the Redis store needs the redis package")
    from voxwire.store.redis_store import RedisStore

    return lambda **kw: RedisStore(server.url, **kw)


@asynccontextmanager
async def opened(opener: Opener, **kw: object) -> AsyncIterator[ConversationStore]:
    store = opener(**kw)
    try:
        yield store
    finally:
        await store.aclose()


def test_a_saved_conversation_loads_back_whole_and_deletes(opener: Opener) -> None:
    async def main() -> None:
        async with opened(opener) as store:
            assert isinstance(store, ConversationStore)
            assert await store.load("twilio:CA1") is None
            saved = conversation()
            await store.save("twilio:CA1", saved)
            loaded = await store.load("twilio:CA1")
            assert loaded is not None
            assert loaded.history.to_dict() == saved.history.to_dict()
            assert (loaded.turns, loaded.protocol) == (2, "twilio")
            assert loaded.updated == pytest.approx(time.time(), abs=5)
            assert await store.load("twilio:CA2") is None
            # a later save replaces the earlier one
            saved.history.add_user("and one more")
            saved.turns = 3
            await store.save("twilio:CA1", saved)
            again = await store.load("twilio:CA1")
            assert again is not None
            assert again.turns == 3
            assert again.history.messages[-1].content == "and one more"
            await store.delete("twilio:CA1")
            await store.delete("twilio:CA1")  # twice is fine
            assert await store.load("twilio:CA1") is None
            counts = store.counts.as_dict()
            assert counts["save"] == 2
            assert counts["hit"] == 2
            assert counts["delete"] == 2
            assert not any(k.endswith("_failed") for k in counts)

    asyncio.run(main())


def test_an_oversized_conversation_keeps_its_newest_turns(opener: Opener) -> None:
    async def main() -> None:
        async with opened(opener, max_bytes=4096) as store:
            big = conversation(turns=40, size=200)
            assert len(big.history.to_json()) > 4096
            await store.save("k", big)
            loaded = await store.load("k")
            assert loaded is not None
            messages = loaded.history.messages
            assert loaded.history.system == "You are a receptionist."
            assert messages[0].role == "user"  # whole turns only
            assert messages[-1].content == "booked, id 7"  # the newest turn stays
            assert len(messages) < len(big.history.messages)
            assert store.counts["trimmed"] == 1
            # a newest turn that does not fit on its own is refused, and counted
            huge = History()
            for _ in range(3):
                huge.add_tool_result("c", "t", "z" * 3000)
            with pytest.raises(StoreError, match="does not fit"):
                await store.save("k2", StoredConversation(huge))
            assert store.counts["save_failed"] == 1

    asyncio.run(main())


def test_sqlite_expiry_and_purge(tmp_path: Path) -> None:
    now = [1_000_000.0]

    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db", ttl=60, clock=lambda: now[0])
        try:
            await store.save("a", conversation())
            now[0] += 30
            await store.save("b", conversation())
            now[0] += 40  # a is 70 s old, b 40 s
            assert await store.load("a") is None
            assert await store.load("b") is not None
            assert await store.purge() == 1
        finally:
            await store.aclose()
        now[0] += 100
        reopened = SqliteStore(tmp_path / "s.db", ttl=60, clock=lambda: now[0])
        assert reopened.purged == 1  # expired rows go when the store opens
        await reopened.aclose()

    asyncio.run(main())


def test_redis_expires_the_key_itself(redis_server: RedisServer) -> None:
    pytest.importorskip("redis", reason="the Redis store needs the redis package")
    from voxwire.store.redis_store import RedisStore

    async def main() -> None:
        store = RedisStore(redis_server.url, ttl=1)
        try:
            await store.save("call", conversation())
            assert await store.load("call") is not None
            ttl = await store._client.pttl(store.prefix + "call")
            assert 0 < ttl <= 1000
            await asyncio.sleep(1.3)
            assert await store.load("call") is None
        finally:
            await store.aclose()

    asyncio.run(main())


def test_malformed_values_are_refused_and_counted(opener: Opener, tmp_path: Path) -> None:
    async def main() -> None:
        async with opened(opener) as store:
            await store.save("k", conversation())
            if isinstance(store, SqliteStore):
                with contextlib.closing(sqlite3.connect(store.path)) as conn:
                    conn.execute("UPDATE conversations SET data = ? WHERE key = 'k'", (b"{nope",))
                    conn.commit()
            else:
                await store._client.set(store.prefix + "k", b'{"v": 99, "history": {}}')
            with pytest.raises(StoreError):
                await store.load("k")
            assert store.counts["load_failed"] == 1

    asyncio.run(main())


def test_decode_refuses_what_encode_did_not_write() -> None:
    raw, dropped = encode(conversation())
    assert dropped == 0
    assert decode(raw).history.to_dict() == conversation().history.to_dict()
    for bad in (b"", b"[]", b'{"v": 1}', b'{"v": 1, "history": {"messages": [{"role": "x"}]}}'):
        with pytest.raises(StoreError):
            decode(bad)


def test_a_redis_that_is_not_there_fails_fast() -> None:
    pytest.importorskip("redis", reason="the Redis store needs the redis package")
    from voxwire.store.redis_store import RedisStore

    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
        try:
            began = time.monotonic()
            with pytest.raises(StoreError, match="redis save failed"):
                await store.save("k", conversation())
            with pytest.raises(StoreError, match="redis load failed"):
                await store.load("k")
            assert time.monotonic() - began < 3
            assert store.counts["save_failed"] == 1
            assert store.counts["load_failed"] == 1
        finally:
            await store.aclose()

    asyncio.run(main())


WRITER = """
import asyncio, sys
from voxwire.store import SqliteStore, StoredConversation
from voxwire.voice.history import History

async def main(path, worker):
    store = SqliteStore(path)
    for i in range(100):
        history = History()
        history.add_user(f"worker {worker} turn {i}")
        await store.save(f"w{worker}:c{i % 10}", StoredConversation(history, turns=i))
    await store.aclose()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_sqlite_is_safe_with_several_worker_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    asyncio.run(SqliteStore(path).aclose())  # the table exists before the writers race
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)]) for w in range(4)
    ]
    assert [w.wait(60) for w in writers] == [0, 0, 0, 0]

    async def main() -> None:
        store = SqliteStore(path)
        try:
            for worker in range(4):
                for c in range(10):
                    loaded = await store.load(f"w{worker}:c{c}")
                    assert loaded is not None
                    assert loaded.turns == 90 + c  # the last save of each key won
        finally:
            await store.aclose()

    asyncio.run(main())


def test_call_key_uses_the_call_id_and_falls_back_to_the_stream_id() -> None:
    fmt = MediaFormat("mulaw", 8000)
    assert call_key("twilio", CallStarted("MZ1", "CA1", fmt)) == "twilio:CA1"
    assert call_key("rawpcm", CallStarted("s1", "", fmt)) == "rawpcm:s1"
    with pytest.raises(StoreError):
        call_key("rawpcm", CallStarted("", "", fmt))


def test_open_store_takes_sqlite_and_redis_urls(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/x.db")
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "x.db"
    asyncio.run(store.aclose())
    for bad in ("postgres://h/db", "sqlite:", "x.db"):
        with pytest.raises(ValueError, match="sqlite"):
            open_store(bad)


def test_open_tool_calls_get_a_result_after_their_round_once() -> None:
    from voxwire.services.base import ToolCall

    history = History()
    history.add_user("book two days")
    history.add_assistant("", [ToolCall("a", "book", {}), ToolCall("b", "book", {})])
    history.add_assistant("One moment, please.")
    history.add_tool_result("b", "book", "done b")  # b answered later, out of order
    history.add_user("and another")
    history.add_assistant("", [ToolCall("c", "book", {})])
    assert history.close_open_tool_calls("unknown") == 2
    assert [(m.role, m.tool_call_id, m.content) for m in history.messages] == [
        ("user", "", "book two days"),
        ("assistant", "", ""),
        ("tool", "a", "unknown"),
        ("assistant", "", "One moment, please."),
        ("tool", "b", "done b"),
        ("user", "", "and another"),
        ("assistant", "", ""),
        ("tool", "c", "unknown"),
    ]
    assert history.close_open_tool_calls("unknown") == 0
