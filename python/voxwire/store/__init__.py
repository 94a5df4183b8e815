"""State that outlives a worker: conversations by call, and call records.

* :class:`~voxwire.store.base.ConversationStore`: the contract; a voice agent given one
  (``VoiceAgent(..., store=...)``, ``voxwire serve --store URL``) saves each call's
  conversation after every ended turn and tool result and resumes it when the provider
  re-opens the call's stream, on this worker or another;
* :class:`~voxwire.store.sqlite.SqliteStore`: one SQLite file (WAL), for one node and
  its worker processes;
* :class:`~voxwire.store.redis_store.RedisStore`: Redis, for a fleet (the ``fleet``
  extra);
* :class:`~voxwire.store.records.CallRecords`: a record of every call at hang-up in
  SQLite, for analytics, kept for a set number of days.

:func:`open_store` makes a store from its URL. ``docs/state.md`` says what survives a
worker and what does not.
"""

from __future__ import annotations

from voxwire.store.base import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TTL,
    ConversationStore,
    StoreCounts,
    StoredConversation,
    StoreError,
    call_key,
    decode,
    encode,
)
from voxwire.store.records import CallRecord, CallRecords
from voxwire.store.sqlite import SqliteStore

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TTL",
    "CallRecord",
    "CallRecords",
    "ConversationStore",
    "SqliteStore",
    "StoreCounts",
    "StoreError",
    "StoredConversation",
    "call_key",
    "decode",
    "encode",
    "open_store",
]


def open_store(
    url: str, *, ttl: float = DEFAULT_TTL, max_bytes: int = DEFAULT_MAX_BYTES
) -> ConversationStore:
    """The store at ``url``: ``sqlite:PATH`` (``sqlite:///abs/path.db`` or
    ``sqlite:relative.db``) or a Redis URL (``redis://``, ``rediss://``, ``unix://``).

    Raises
    ------
    ValueError
        For any other URL, or a bad ``ttl`` / ``max_bytes``.
    ImportError
        For a Redis URL without the ``redis`` package.
    sqlite3.Error
        When the SQLite file cannot be opened.
    """
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError("sqlite: needs a file path, as in sqlite:///var/lib/voxwire/state.db")
        return SqliteStore(path, ttl=ttl, max_bytes=max_bytes)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from voxwire.store.redis_store import RedisStore

        return RedisStore(url, ttl=ttl, max_bytes=max_bytes)
    raise ValueError(
        f"a store URL is sqlite:PATH or redis://HOST:PORT[/DB], got {url.split('@')[-1]!r}"
    )
