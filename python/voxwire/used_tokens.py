"""Where single-use tokens are remembered: in the process, or in an SQLite file shared by
the processes of one host.

A signed per-call token (:class:`voxwire.security.CallTokens`) opens one connection: its
random id (``jti``) is claimed when it is verified and remembered until the token has
expired. A :class:`UsedTokens` store holds those claims. :class:`MemoryUsedTokens` (the
default) is one process's memory: enough for one server process, not for
``voxwire serve --workers N``, whose workers are separate processes behind one port, so
that a replay landing on another worker would be accepted. :class:`SqliteUsedTokens`
keeps the claims in an SQLite file (WAL mode); a claim is one ``INSERT`` whose primary key
makes it atomic across processes, so exactly one of any number of workers verifying the
same token wins. ``voxwire serve --workers N`` gives its workers such a file in a private
directory of its own (``--used-tokens PATH`` names one instead). The file is for the
processes of one host: SQLite's locking is not safe on network file systems.

Both stores are bounded: when ``max_used`` unexpired tokens are held, a new claim is
refused (the store fails closed) until some expire.

>>> used = MemoryUsedTokens(max_used=2)
>>> used.claim("a", until=100.0, now=0.0)
>>> used.claim("a", until=100.0, now=1.0)
Traceback (most recent call last):
...
voxwire.security.TokenError: token already used
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Protocol

__all__ = ["MemoryUsedTokens", "SqliteUsedTokens", "UsedTokens"]


def _error(reason: str) -> Exception:
    from voxwire.security import TokenError

    return TokenError(reason)


ALREADY_USED = "token already used"
FULL = "too many live tokens in use; try again later"


class UsedTokens(Protocol):
    """A memory of claimed token ids."""

    def claim(self, jti: str, until: float, now: float) -> None:
        """Record ``jti`` as used until ``until`` (seconds since the epoch); raise
        :class:`~voxwire.security.TokenError` if it was claimed before, or when the store
        is full of unexpired claims."""


class MemoryUsedTokens:
    """Claims in this process's memory (thread-safe)."""

    def __init__(self, max_used: int = 100_000) -> None:
        if max_used < 1:
            raise ValueError(f"max_used must be >= 1, got {max_used}")
        self.max_used = max_used
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._used)

    def claim(self, jti: str, until: float, now: float) -> None:
        with self._lock:
            if jti in self._used:
                raise _error(ALREADY_USED)
            if len(self._used) >= self.max_used:
                self._used = {k: t for k, t in self._used.items() if t >= now}
                if len(self._used) >= self.max_used:
                    raise _error(FULL)
            self._used[jti] = until


class SqliteUsedTokens:
    """Claims in an SQLite file, shared by every process that opens it.

    ``timeout`` bounds the wait for another process's write lock (a claim is a few
    milliseconds; a store that stays locked longer refuses the token rather than hold
    the connection). Expired claims are deleted as new ones come.
    """

    def __init__(self, path: str | Path, max_used: int = 100_000, timeout: float = 2.0) -> None:
        if max_used < 1:
            raise ValueError(f"max_used must be >= 1, got {max_used}")
        self.path = Path(path)
        self.max_used = max_used
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS used_tokens "
                "(jti TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS used_tokens_until ON used_tokens(until)")

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM used_tokens").fetchone()
        return int(count)

    def claim(self, jti: str, until: float, now: float) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("DELETE FROM used_tokens WHERE until < ?", (now,))
                    inserted = self._db.execute(
                        "INSERT OR IGNORE INTO used_tokens (jti, until) VALUES (?, ?)",
                        (jti, until),
                    ).rowcount
                    if inserted != 1:
                        raise _error(ALREADY_USED)
                    (count,) = self._db.execute("SELECT count(*) FROM used_tokens").fetchone()
                    if count > self.max_used:
                        raise _error(FULL)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:  # locked too long, disk full, a broken file
                raise _error(f"token store unavailable: {type(exc).__name__}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()
