"""What a conversation store keeps, and the contract every backend follows.

A :class:`ConversationStore` keeps one :class:`StoredConversation` per call, under the
call's key (:func:`call_key`), for ``ttl`` seconds after its last save. The voice agent
(:class:`voxwire.agents.pipeline.VoiceAgent` with ``store=``) saves after every turn
whose reply ended (played out, cut by a barge-in, or failed) and after every tool
result, and loads when a call starts: a call whose key is known resumes its
conversation. Backends: :class:`voxwire.store.sqlite.SqliteStore` (one file, one node,
any number of worker processes) and :class:`voxwire.store.redis_store.RedisStore` (a
fleet).

Bounded size
------------
:func:`encode` turns a conversation into JSON of at most ``max_bytes`` bytes (UTF-8):
when the whole history does not fit, its oldest whole turns (a user message and what
follows it up to the next one) are dropped until it does; the system prompt and the
newest turn are kept. A conversation whose newest turn alone does not fit is refused
with :class:`StoreError`. :func:`decode` refuses malformed data with
:class:`StoreError` (a corrupt or foreign value is never resumed).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from voxwire.errors import VoxwireError
from voxwire.protocols.events import CallStarted
from voxwire.voice.history import History

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TTL",
    "FORMAT",
    "ConversationStore",
    "StoreCounts",
    "StoreError",
    "StoredConversation",
    "call_key",
    "decode",
    "encode",
]

FORMAT = 1
"""Version of the stored JSON (``"v"``); other versions are not resumed."""

DEFAULT_TTL = 3600.0
"""Seconds a conversation is kept after its last save (default one hour)."""

DEFAULT_MAX_BYTES = 256 * 1024
"""Largest stored conversation, in bytes of JSON (default 256 KiB)."""


class StoreError(VoxwireError):
    """A conversation could not be stored or read back (malformed, too large, or the
    backend failed)."""


def call_key(protocol: str, started: CallStarted) -> str:
    """The key of a call in the store: ``PROTOCOL:ID``.

    ``ID`` is the provider's call identifier (``CallStarted.call_id``: Twilio's
    ``callSid``, Telnyx's ``call_control_id``, Plivo's ``callId``, Exotel's
    ``call_sid``, Teler's ``call_id``, jambonz's ``callSid``, Vonage's ``uuid``), which
    a stream re-opened for the same call carries again, or the stream id where the
    protocol gives no call id (raw PCM's, AudioSocket's UUID).
    """
    ident = started.call_id or started.stream_id
    if not ident:
        raise StoreError(f"the {protocol} call carries no call id or stream id to key it by")
    return f"{protocol}:{ident}"


@dataclass
class StoredConversation:
    """One call's conversation as stored.

    ``turns`` counts the turns whose reply ended before the save (over every
    connection of the call); ``connections`` how many streams the call has had
    (1 before any resume); ``updated`` is the wall-clock time of the save (Unix
    seconds); ``protocol`` the call's protocol name.
    """

    history: History
    turns: int = 0
    connections: int = 1
    updated: float = 0.0
    protocol: str = ""


@runtime_checkable
class ConversationStore(Protocol):
    """Where conversations outlive the worker that held them; see the module docstring.

    Every method may raise :class:`StoreError` (or the backend's own error): the agent
    logs and counts it and the call goes on without the store.
    """

    ttl: float
    """Seconds a conversation is kept after its last save."""
    counts: StoreCounts
    """Operations and failures of this store (``load``, ``hit``, ``save``, ``delete``,
    ``trimmed``, and ``<operation>_failed``)."""

    async def load(self, key: str) -> StoredConversation | None:
        """The conversation stored under ``key``; None when there is none (or it expired)."""
        ...

    async def save(self, key: str, conversation: StoredConversation) -> None:
        """Store ``conversation`` under ``key`` for ``ttl`` seconds from now."""
        ...

    async def delete(self, key: str) -> None:
        """Forget the conversation under ``key`` (nothing happens when there is none)."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections and threads."""
        ...


class StoreCounts:
    """Operations counted by name (thread-safe), for logs and metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def note(self, name: str, n: int = 1) -> None:
        """Count ``n`` of ``name``."""
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def as_dict(self) -> dict[str, int]:
        """A copy of the counts."""
        with self._lock:
            return dict(self._counts)

    def encode(self, conversation: StoredConversation, max_bytes: int) -> bytes:
        """:func:`encode`, counting ``save_failed`` when it refuses and ``trimmed`` when it
        dropped turns to fit."""
        try:
            raw, dropped = encode(conversation, max_bytes)
        except StoreError:
            self.note("save_failed")
            raise
        if dropped:
            self.note("trimmed")
        return raw

    def decode(self, raw: bytes | str | None) -> StoredConversation | None:
        """:func:`decode` of what a backend read (None for nothing stored), counting
        ``hit`` or ``load_failed``."""
        if raw is None:
            return None
        try:
            found = decode(raw)
        except StoreError:
            self.note("load_failed")
            raise
        self.note("hit")
        return found


def _turn_starts(history: History) -> list[int]:
    return [i for i, m in enumerate(history.messages) if m.role == "user"]


def encode(
    conversation: StoredConversation, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[bytes, int]:
    """The conversation as UTF-8 JSON of at most ``max_bytes`` bytes (see the module
    docstring), and how many of its messages were dropped to fit; ``StoreError`` when
    even its newest turn does not fit."""
    history = conversation.history
    data = _as_dict(conversation, history.to_dict())
    raw = json.dumps(data, ensure_ascii=False).encode()
    if len(raw) <= max_bytes:
        return raw, 0
    messages: list[dict[str, Any]] = data["history"]["messages"]
    starts = _turn_starts(history)
    # drop whole turns from the oldest; the newest turn always stays
    for start in starts[1:]:
        kept = {**data, "history": {**data["history"], "messages": messages[start:]}}
        raw = json.dumps(kept, ensure_ascii=False).encode()
        if len(raw) <= max_bytes:
            return raw, start
    raise StoreError(
        f"the conversation does not fit max_bytes={max_bytes}: its newest turn alone "
        f"takes {len(raw)} bytes"
    )


def _as_dict(conversation: StoredConversation, history: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": FORMAT,
        "protocol": conversation.protocol,
        "turns": conversation.turns,
        "connections": conversation.connections,
        "updated": conversation.updated,
        "history": history,
    }


def decode(raw: bytes | str) -> StoredConversation:
    """A conversation from :func:`encode`'s JSON; ``StoreError`` when malformed."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"stored conversation is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StoreError("stored conversation is not a JSON object")
    if data.get("v") != FORMAT:
        raise StoreError(f"stored conversation has format {data.get('v')!r}, expected {FORMAT}")
    history = data.get("history")
    if not isinstance(history, dict):
        raise StoreError("stored conversation has no history object")
    try:
        return StoredConversation(
            History.from_dict(history),
            turns=int(data.get("turns", 0)),
            connections=int(data.get("connections", 1)),
            updated=float(data.get("updated", 0.0)),
            protocol=str(data.get("protocol", "")),
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"stored conversation is malformed: {exc}") from None
