"""A call's conversation history: what was said, by whom, as the caller heard it.

:class:`History` holds the system prompt and the messages of one call in the shape every
chat model takes (:class:`~voxwire.services.base.ChatMessage`). Two rules keep it true:

* **An assistant turn holds what the caller heard.** The conversation appends the text
  of a reply as it is spoken and, after a barge-in, cuts it to the words whose audio had
  started playing (:meth:`History.cut_reply`). A reply that was never heard at all
  leaves no assistant text; its tool calls stay.
* **Tool calls that ran stay, with their results.** A completed booking is never lost
  because the caller interrupted the sentence that announced it, so the model never runs
  it again.

The history is bounded: :meth:`History.messages_for_model` drops the oldest whole turns
(a user message and everything after it up to the next one) until the characters fit
``max_chars``; the system prompt is always kept. :meth:`History.to_json` /
:meth:`History.from_json` store and resume a call's conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from voxwire.services.base import ChatMessage, Role, ToolCall

__all__ = ["History"]

_ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


def _size(message: ChatMessage) -> int:
    return len(message.content) + sum(
        len(c.name) + len(c.arguments_json()) for c in message.tool_calls
    )


class History:
    """The messages of one call; see the module docstring.

    Parameters
    ----------
    system : str
        The system prompt (may be empty).
    max_chars : int
        Budget for :meth:`messages_for_model`, in characters of content (default 24,000,
        about 6,000 tokens of English).
    max_message_chars : int
        Longest content one message may hold; longer text is cut (a runaway transcript
        or tool result cannot grow the context without bound). Default 4,000.
    """

    def __init__(
        self, system: str = "", *, max_chars: int = 24_000, max_message_chars: int = 4_000
    ) -> None:
        if max_chars <= 0 or max_message_chars <= 0:
            raise ValueError(
                f"max_chars and max_message_chars must be positive, got {max_chars}, "
                f"{max_message_chars}"
            )
        self.system = system
        self.max_chars = max_chars
        self.max_message_chars = max_message_chars
        self.messages: list[ChatMessage] = []
        #: characters cut from messages longer than ``max_message_chars``
        self.truncated_chars = 0

    def __len__(self) -> int:
        return len(self.messages)

    def _bounded(self, text: str) -> str:
        if len(text) > self.max_message_chars:
            self.truncated_chars += len(text) - self.max_message_chars
            return text[: self.max_message_chars]
        return text

    def append(self, message: ChatMessage) -> int:
        """Append ``message`` (its content bounded); return its index."""
        if message.role not in _ROLES:
            raise ValueError(f"unknown role {message.role!r}")
        content = self._bounded(message.content)
        if content is not message.content:
            message = ChatMessage(
                message.role, content, message.tool_calls, message.tool_call_id, message.name
            )
        self.messages.append(message)
        return len(self.messages) - 1

    def add_user(self, text: str) -> int:
        """The caller's turn, as transcribed."""
        return self.append(ChatMessage("user", text))

    def add_assistant(self, text: str = "", tool_calls: Sequence[ToolCall] = ()) -> int:
        """An assistant message (reply text spoken so far, and/or tool calls)."""
        return self.append(ChatMessage("assistant", text, tuple(tool_calls)))

    def add_tool_result(self, call_id: str, name: str, content: str) -> int:
        """The result of the tool call ``call_id``."""
        return self.append(ChatMessage("tool", content, tool_call_id=call_id, name=name))

    def set_content(self, index: int, text: str) -> None:
        """Replace the text of message ``index`` (keeping its tool calls)."""
        old = self.messages[index]
        self.messages[index] = ChatMessage(
            old.role, self._bounded(text), old.tool_calls, old.tool_call_id, old.name
        )

    def cut_reply(self, indices: Iterable[int], heard: Sequence[str]) -> None:
        """After a barge-in: give the assistant messages ``indices`` the ``heard`` texts.

        ``heard[i]`` is what the caller heard of message ``indices[i]``. An assistant
        message left with no text and no tool calls is removed; messages with tool calls
        keep them (and their results) whatever was heard.
        """
        indices = list(indices)
        if len(indices) != len(heard):
            raise ValueError(f"{len(indices)} messages but {len(heard)} heard texts")
        drop: list[int] = []
        for index, text in zip(indices, heard, strict=True):
            message = self.messages[index]
            if message.role != "assistant":
                raise ValueError(f"message {index} is a {message.role} message")
            self.set_content(index, text)
            if not text and not message.tool_calls:
                drop.append(index)
        for index in sorted(drop, reverse=True):
            del self.messages[index]

    def close_open_tool_calls(self, content: str) -> int:
        """Give every tool call that has no result the result ``content``; how many.

        A history saved while a tool ran (its worker died) holds the call without its
        result, which chat models refuse; the result inserted after the call's round
        says what is known (that it may or may not have run).
        """
        answered = {m.tool_call_id for m in self.messages if m.role == "tool"}
        added = 0
        i = 0
        while i < len(self.messages):
            message = self.messages[i]
            i += 1
            open_calls = [c for c in message.tool_calls if c.id not in answered]
            if message.role != "assistant" or not open_calls:
                continue
            while i < len(self.messages) and self.messages[i].role == "tool":
                i += 1
            for call in open_calls:
                self.messages.insert(
                    i, ChatMessage("tool", content, tool_call_id=call.id, name=call.name)
                )
                answered.add(call.id)
                i += 1
                added += 1
        return added

    def messages_for_model(self) -> list[ChatMessage]:
        """The system prompt and the newest whole turns that fit ``max_chars``.

        A turn is a user message and what follows it up to the next one; the newest turn
        is always kept, whatever its size.
        """
        budget = self.max_chars - len(self.system)
        starts = [0, *(i for i, m in enumerate(self.messages) if m.role == "user" and i)]
        ends = [*starts[1:], len(self.messages)]
        keep_from = len(self.messages)
        total = 0
        for start, end in zip(reversed(starts), reversed(ends), strict=True):
            size = sum(_size(m) for m in self.messages[start:end])
            if keep_from < len(self.messages) and total + size > budget:
                break
            total += size
            keep_from = start
        system = [ChatMessage("system", self.system)] if self.system else []
        return system + self.messages[keep_from:]

    # --- storage -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The history as plain JSON types."""
        return {
            "system": self.system,
            "max_chars": self.max_chars,
            "max_message_chars": self.max_message_chars,
            "messages": [_message_to_dict(m) for m in self.messages],
        }

    def to_json(self) -> str:
        """The history as JSON text (see :meth:`from_json`)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a history from :meth:`to_dict`; ``ValueError`` on a malformed one."""
        try:
            history = cls(
                str(data.get("system", "")),
                max_chars=int(data.get("max_chars", 24_000)),
                max_message_chars=int(data.get("max_message_chars", 4_000)),
            )
            for item in data.get("messages", []):
                history.append(_message_from_dict(item))
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed history: {exc}") from None
        return history

    @classmethod
    def from_json(cls, text: str) -> History:
        """Rebuild a history from :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"malformed history JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("malformed history: not a JSON object")
        return cls.from_dict(data)


def _message_to_dict(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in m.tool_calls
        ]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.name:
        out["name"] = m.name
    return out


def _message_from_dict(item: dict[str, Any]) -> ChatMessage:
    role = item["role"]
    if role not in _ROLES:
        raise ValueError(f"malformed history: unknown role {role!r}")
    calls = tuple(
        ToolCall(str(c["id"]), str(c["name"]), dict(c.get("arguments", {})))
        for c in item.get("tool_calls", [])
    )
    role_: Role = role
    return ChatMessage(
        role_,
        str(item.get("content", "")),
        calls,
        str(item.get("tool_call_id", "")),
        str(item.get("name", "")),
    )
