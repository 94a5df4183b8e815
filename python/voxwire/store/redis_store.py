"""A conversation store in Redis, for a fleet (``pip install "voxwire[fleet]"``).

:class:`RedisStore` keeps each conversation as one string value,
``PREFIX + key`` (default prefix ``voxwire:conversation:``), written with ``SET ... EX
ttl``: Redis itself expires it ``ttl`` seconds after the last save, and every worker of
every node that reaches the same Redis can resume the call. It uses the asyncio client
of the ``redis`` package, with socket timeouts (``timeout``) so that a Redis that stops
answering fails a save in bounded time instead of holding the call's turn.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from voxwire.store.base import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TTL,
    StoreCounts,
    StoredConversation,
    StoreError,
)

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

DEFAULT_PREFIX = "voxwire:conversation:"
"""What the Redis key of a conversation starts with."""


def _import_redis() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('the Redis store needs redis: pip install "voxwire[fleet]"') from exc
    return aioredis


class RedisStore:
    """Conversations in the Redis at ``url`` (``redis://host:port/db``); see the module
    docstring.

    Parameters
    ----------
    url : str
        The Redis URL (``redis://``, ``rediss://`` for TLS, ``unix://``), as the ``redis``
        package takes it; a password goes in the URL, from the deployment's secrets.
    ttl : float
        Seconds a conversation is kept after its last save (at least one second).
    max_bytes : int
        Largest stored conversation (older turns are dropped to fit).
    prefix : str
        What every key starts with.
    timeout : float
        Seconds to connect, and for each command.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = DEFAULT_TTL,
        max_bytes: int = DEFAULT_MAX_BYTES,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 1.0,
    ) -> None:
        if not ttl >= 1 or max_bytes < 1024 or not timeout > 0:
            raise ValueError(
                f"ttl must be >= 1 s, max_bytes >= 1024 and timeout > 0, got {ttl}, "
                f"{max_bytes}, {timeout}"
            )
        aioredis = _import_redis()
        self.url = url
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.prefix = prefix
        self.timeout = timeout
        self.counts = StoreCounts()
        self._client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def __repr__(self) -> str:
        host = self.url.rsplit("@", 1)[-1]  # never the password
        return f"RedisStore({host!r}, ttl={self.ttl:g})"

    async def _call(self, name: str, command: str, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            result = await asyncio.wait_for(
                getattr(self._client, command)(*args, **kwargs), 2 * self.timeout
            )
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.counts.note(f"{name}_failed")
            raise StoreError(f"redis {name} failed: {type(exc).__name__}: {exc}") from exc
        self.counts.note(name)
        return result

    async def load(self, key: str) -> StoredConversation | None:
        return self.counts.decode(await self._call("load", "get", self.prefix + key))

    async def save(self, key: str, conversation: StoredConversation) -> None:
        conversation.updated = time.time()
        raw = self.counts.encode(conversation, self.max_bytes)
        await self._call("save", "set", self.prefix + key, raw, ex=max(1, round(self.ttl)))

    async def delete(self, key: str) -> None:
        await self._call("delete", "delete", self.prefix + key)

    async def aclose(self) -> None:
        # redis 5.0.1 renamed close() to aclose()
        closer = getattr(self._client, "aclose", None) or self._client.close
        await closer()
