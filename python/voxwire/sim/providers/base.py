"""What every simulated provider shares: the side's interface, its facts, the strict checks.

A :class:`ProviderSide` speaks a protocol the way the telephony provider does: it builds
the opening messages (connected, start, ...), one message per 20 ms of caller audio and
the closing message, and it reads what the application sends back (audio, marks, clear)
into the events of :mod:`voxwire.sim.providers.events` (play audio, a mark, a clear, or
:class:`~voxwire.sim.providers.events.Unexpected`). It answers a played
mark and a clear as the provider's documentation says.

The protocol's facts (``name``, ``default_rate``, ``rates``, ``subprotocols``, whether it
runs over TCP, ``supports_marks``, ``supports_clear``) are read from the codec class of
:data:`voxwire.protocols.CODECS`, where they are stated once. The wire format is not: each
side writes it from the provider's pages, field by field, so that it tests the codec from
the other side of the wire instead of repeating it.

Two modes
---------
By default a side is lenient, like the provider: a message it would not accept becomes an
:class:`Unexpected` event (kept for the report) and the call goes on. With
``strict=True`` the same message raises :class:`~voxwire.errors.ConformanceError`, and so
does anything the documentation does not allow even where a provider would let it pass:
a key set other than the documented one, a value of the wrong type, a text frame where a
binary one is due (or the reverse), base64 that does not decode, a mark name that is not
a string.
"""

from __future__ import annotations

import base64
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from voxwire.errors import ConformanceError
from voxwire.protocols.base import MediaStreamCodec
from voxwire.sim.providers.events import PCM, Message, PhoneEvent, Unexpected

__all__ = ["ProviderSide", "b64", "dumps", "field", "is_uuid", "l16"]


def dumps(obj: object) -> str:
    """Compact JSON, as providers send it."""
    return json.dumps(obj, separators=(",", ":"))


def b64(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def field(obj: object, *path: str) -> object:
    """``obj[path[0]][path[1]]...``, or ``None`` where a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def l16(raw: bytes, big_endian: bool = False) -> PCM | None:
    """16-bit linear PCM from bytes, or ``None`` for an odd byte count."""
    if len(raw) % 2:
        return None
    return np.frombuffer(raw, dtype=">i2" if big_endian else "<i2").astype(np.int16)


def is_uuid(value: str) -> bool:
    """Whether ``value`` spells a UUID."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class ProviderSide(ABC):
    """One call's provider side; subclasses implement a protocol's wire format.

    Parameters
    ----------
    rate
        The line rate; one of the protocol's ``rates`` (default: ``default_rate``).
    call_id
        The call's identifier (default: a new UUID); the stream identifiers derive from it.
    strict
        Raise :class:`~voxwire.errors.ConformanceError` on any message the provider's
        documentation does not allow, instead of reporting it as :class:`Unexpected`.
    parameters
        Custom parameters the provider passes to the application in its start message
        (where the protocol has them).
    """

    #: the codec class whose protocol this side speaks; the facts below come from it
    codec: ClassVar[type[MediaStreamCodec]]
    name: ClassVar[str]
    #: default line rate of the protocol's usual set-up
    default_rate: ClassVar[int] = 8000
    #: line rates the protocol offers
    rates: ClassVar[tuple[int, ...]] = (8000,)
    #: WebSocket subprotocols to offer when connecting
    subprotocols: ClassVar[tuple[str, ...]] = ()
    #: whether the protocol runs over a plain TCP byte stream instead of a WebSocket
    raw_tcp: ClassVar[bool] = False
    #: whether the provider echoes marks once played
    supports_marks: ClassVar[bool] = True
    #: whether the provider has a message that drops its queued audio
    supports_clear: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        codec = cls.__dict__.get("codec")
        if codec is None:
            return
        cls.name = codec.name
        cls.default_rate = codec.default_rate
        cls.rates = codec.rates
        cls.subprotocols = codec.subprotocols
        cls.raw_tcp = codec.transport == "tcp"
        cls.supports_marks = codec.supports_marks
        cls.supports_clear = codec.supports_clear

    def __init__(
        self,
        rate: int | None = None,
        *,
        call_id: str | None = None,
        strict: bool = False,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.rate = rate or self.default_rate
        if self.rate not in self.rates:
            raise ValueError(
                f"{self.name} lines run at {', '.join(map(str, self.rates))} Hz, got {self.rate}"
            )
        self.strict = strict
        self.parameters = dict(parameters or {})
        self.call_id = call_id or str(uuid.uuid4())
        self._begin()

    def _begin(self) -> None:
        """Set up the call's state (called last by ``__init__``); a subclass adds its own."""
        self.sequence = 0  # the provider's message counter
        self.chunk = 0  # caller audio messages sent

    @property
    def frame(self) -> int:
        """Samples in one 20 ms message at the line rate."""
        return self.rate // 50

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    @abstractmethod
    def opening(self) -> list[Message]:
        """What the provider sends when the call is answered (connected, start, ...)."""

    @abstractmethod
    def audio(self, pcm: PCM) -> Message:
        """One message carrying 20 ms of caller audio (``self.frame`` samples)."""

    def closing(self) -> list[Message]:
        """What the provider sends when the caller hangs up (empty: it closes the socket)."""
        return []

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message | None:
        """What the provider sends when the caller presses ``digit`` (None: the dialect
        carries no key presses)."""
        return None

    @abstractmethod
    def parse(self, message: Message) -> list[PhoneEvent]:
        """What one message from the application asks for.

        Raises
        ------
        ConformanceError
            In strict mode, the message breaks the provider's documented format.
        """

    def mark_played(self, name: str) -> list[Message]:
        """The provider's answer once the audio before mark ``name`` has played."""
        return []

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        """The provider's answer to a clear that dropped the marks ``pending``."""
        return []

    # --- checks: the two modes ----------------------------------------------------------

    def _violation(self, reason: str) -> ConformanceError:
        return ConformanceError(f"{self.name}: {reason}")

    def _refuse(self, reason: str) -> list[PhoneEvent]:
        """A message the provider would not accept: Unexpected, or raised when strict."""
        if self.strict:
            raise self._violation(reason)
        return [Unexpected(reason)]

    def _require(self, ok: bool, reason: str) -> None:
        """A rule of the documentation that only strict mode enforces."""
        if not ok and self.strict:
            raise self._violation(reason)

    def _object(self, message: Message) -> dict[str, Any] | None:
        """The JSON object a text frame carries, or ``None`` (raised when strict)."""
        if isinstance(message, bytes):
            self._require(False, f"expected a JSON text frame, got {len(message)} bytes binary")
            return None
        try:
            value = json.loads(message)
        except ValueError:
            self._require(False, f"not JSON: {message!r:.80}")
            return None
        if not isinstance(value, dict):
            self._require(False, f"expected a JSON object, got {value!r:.80}")
            return None
        return value

    def _keys(self, obj: object, expected: set[str], where: str) -> None:
        """Strict: ``obj`` is an object with exactly the ``expected`` keys."""
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        self._require(
            isinstance(obj, dict) and set(obj) == expected,
            f"{where}: expected keys {sorted(expected)}, got {got}",
        )

    def _name(self, obj: object, *path: str) -> str | None:
        """A mark name at ``path``; strict: it must be a string."""
        name = field(obj, *path)
        self._require(isinstance(name, str), f"{'.'.join(path)} must be a string, got {name!r}")
        return name if isinstance(name, str) else None

    def _payload(self, obj: object, *path: str) -> bytes | None:
        """The bytes of the base64 field at ``path``; strict: it must be valid base64."""
        value = field(obj, *path)
        where = ".".join(path)
        if not isinstance(value, str):
            self._require(False, f"{where}: expected a base64 string, got {type(value).__name__}")
            return None
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            self._require(False, f"{where}: not valid base64: {value!r:.40}")
            return None

    def _same(self, value: object, expected: object, where: str) -> bool:
        """Whether ``value`` is ``expected``; strict: it must be."""
        self._require(value == expected, f"{where}: expected {expected!r}, got {value!r:.80}")
        return value == expected
