"""A conversation store in one SQLite file: one node, any number of worker processes.

:class:`SqliteStore` keeps the conversations in the table ``conversations`` of one
database file, in write-ahead-log mode (readers never wait for the writer; each
``voxwire serve --workers N`` worker opens its own connection to the same file, and
SQLite's file locks order their writes, each waiting up to ``busy_timeout`` seconds).
Each save is one ``INSERT ... ON CONFLICT`` statement, committed at once: a worker
killed in the middle of one leaves the previous save intact.

The blocking ``sqlite3`` calls run on one thread of the store's own, never on the event
loop, so a slow disk delays the save and not the calls' audio.

Table
-----
==============  ======  ====================================================
column          type    what
==============  ======  ====================================================
``key``         TEXT    the call's key (:func:`voxwire.store.base.call_key`),
                        primary key
``data``        BLOB    the conversation, :func:`voxwire.store.base.encode`'s
                        JSON
``updated``     REAL    wall-clock time of the save (Unix seconds)
``expires``     REAL    when it expires (``updated + ttl``); an expired row is
                        never loaded, and is deleted when the store opens and
                        every ``purge_every`` saves
==============  ======  ====================================================
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from voxwire.store.base import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TTL,
    StoreCounts,
    StoredConversation,
    StoreError,
)

__all__ = ["SqliteStore", "open_sqlite"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    updated REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_expires ON conversations (expires);
"""


def open_sqlite(path: str | Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """A connection to the database ``path`` in WAL mode, autocommit, usable from the
    thread that runs the store's work."""
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # WAL with synchronous=NORMAL: a power loss may lose the last commits, never corrupt
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class SqliteStore:
    """Conversations in the SQLite file ``path``; see the module docstring.

    Parameters
    ----------
    path : str or Path
        The database file (created with its table when missing).
    ttl : float
        Seconds a conversation is kept after its last save.
    max_bytes : int
        Largest stored conversation (older turns are dropped to fit).
    busy_timeout : float
        Seconds a write waits for another process's lock before it fails.
    purge_every : int
        Delete the expired rows every this many saves.
    clock : callable
        Wall-clock time in Unix seconds (for tests).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        ttl: float = DEFAULT_TTL,
        max_bytes: int = DEFAULT_MAX_BYTES,
        busy_timeout: float = 5.0,
        purge_every: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ttl > 0 or max_bytes < 1024 or purge_every < 1:
            raise ValueError(
                f"ttl must be > 0, max_bytes >= 1024 and purge_every >= 1, got {ttl}, "
                f"{max_bytes}, {purge_every}"
            )
        self.path = Path(path)
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.purge_every = purge_every
        self.clock = clock
        self.counts = StoreCounts()
        self._saves = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="voxwire-store")
        self._conn = open_sqlite(self.path, busy_timeout)
        try:
            self._conn.executescript(_SCHEMA)
            self.purged = self._purge()
        except sqlite3.Error:
            self._conn.close()
            self._executor.shutdown(wait=False)
            raise

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r}, ttl={self.ttl:g})"

    async def _run(self, name: str, work: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, work)
        except (sqlite3.Error, StoreError) as exc:
            self.counts.note(f"{name}_failed")
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"sqlite {name} failed: {exc}") from exc
        self.counts.note(name)
        return result

    def _purge(self) -> int:
        return self._conn.execute(
            "DELETE FROM conversations WHERE expires <= ?", (self.clock(),)
        ).rowcount

    async def load(self, key: str) -> StoredConversation | None:
        def work() -> bytes | None:
            row = self._conn.execute(
                "SELECT data FROM conversations WHERE key = ? AND expires > ?",
                (key, self.clock()),
            ).fetchone()
            return None if row is None else bytes(row[0])

        return self.counts.decode(await self._run("load", work))

    async def save(self, key: str, conversation: StoredConversation) -> None:
        now = self.clock()
        conversation.updated = now
        raw = self.counts.encode(conversation, self.max_bytes)

        def work() -> None:
            self._conn.execute(
                "INSERT INTO conversations (key, data, updated, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data, "
                "updated = excluded.updated, expires = excluded.expires",
                (key, raw, now, now + self.ttl),
            )
            self._saves += 1
            if self._saves % self.purge_every == 0:
                self._purge()

        await self._run("save", work)

    async def delete(self, key: str) -> None:
        def work() -> None:
            self._conn.execute("DELETE FROM conversations WHERE key = ?", (key,))

        await self._run("delete", work)

    async def purge(self) -> int:
        """Delete the expired conversations now; how many."""
        return await self._run("purge", self._purge)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)
