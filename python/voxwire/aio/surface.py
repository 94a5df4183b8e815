"""The application surface of a call: what an agent may use, whatever the transport.

:class:`CallSurface` is the one interface the agents (:func:`voxwire.agents.echo.echo_handler`,
:class:`voxwire.agents.pipeline.VoiceAgent`) are written against. Two classes provide it:

* :class:`voxwire.aio.session.Call`, for the WebSocket dialects and AudioSocket;
* :class:`voxwire.aio.rtp_call.RtpCall`, for a plain RTP stream over UDP, and its
  subclass :class:`voxwire.aio.sip.SipCall`, for a SIP call's negotiated stream.

A handler iterates the call's events and answers with paced audio and marks::

    async def handler(call: CallSurface) -> None:
        async for event in call:
            if isinstance(event, Audio):
                call.play(event.pcm, event.sample_rate)

Events
------
:class:`~voxwire.protocols.events.CallStarted` comes first; its
``media_format.sample_rate`` is the line rate, the rate of every position below.
:class:`~voxwire.protocols.events.Audio` carries the caller's audio (at the pipeline rate
where the call has one), :class:`~voxwire.protocols.events.MarkPlayed` tells that the
audio before a mark has played or was cleared, and
:class:`~voxwire.protocols.events.Stopped` that the stream ended; the iteration ends when
the call does. Other events (``Dtmf``, ``Cleared``, ...) may come and may be ignored.

What is not here
----------------
Statistics differ by transport (``Call.stats`` is the codec's
:class:`~voxwire.protocols.base.SessionStats`, ``RtpCall.stats`` the RTP session's
:class:`~voxwire.protocols.rtp_session.RtpSessionStats`), and so do the close codes a
transport can carry; code that needs either uses the concrete class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from voxwire.pacing import PacedStream
from voxwire.protocols.events import CallStarted, Event

if TYPE_CHECKING:
    from voxwire.aio.rtp_call import RtpCall
    from voxwire.aio.session import Call

__all__ = ["CallSurface", "CallT", "NamedCodec"]


class NamedCodec(Protocol):
    """What the surface says of the call's protocol: its short name, for logs."""

    @property
    def name(self) -> str:
        """Short protocol name (``"twilio"``, ``"audiosocket"``, ``"rtp"``, ...)."""
        ...


class CallSurface(Protocol):
    """One call as an agent sees it: events in, paced audio and marks out.

    Positions (:attr:`queued_total`, :meth:`playout_position`, :attr:`played_samples`)
    count line-rate samples since the call started.
    """

    on_say: Callable[[str], None] | None
    """Says a text into the call as the agent (raising ValueError for one it refuses);
    set by an agent that can speak a text it is given (VoiceAgent), None otherwise."""

    @property
    def codec(self) -> NamedCodec:
        """The call's protocol (its ``name``)."""
        ...

    @property
    def started(self) -> CallStarted | None:
        """The :class:`CallStarted` event, once it came; None before."""
        ...

    @property
    def stream(self) -> PacedStream | None:
        """The paced outbound stream; None until the call started (nothing can play)."""
        ...

    def __aiter__(self) -> AsyncIterator[Event]:
        """The call's events, until it ends."""
        ...

    def play(self, pcm: object, sample_rate: int | None = None) -> None:
        """Queue mono PCM16 at ``sample_rate`` (default the line rate) for paced playback."""
        ...

    def flush(self) -> None:
        """Pad and queue the last partial frame (the end of an utterance)."""
        ...

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far; a :class:`MarkPlayed` follows."""
        ...

    def clear(self) -> None:
        """Barge-in: drop the queued audio now; pending marks come back cleared."""
        ...

    def playout_position(self, now: float) -> int:
        """Line-rate samples the caller has heard by ``now`` (the send clock's estimate)."""
        ...

    @property
    def committed_samples(self) -> int:
        """Line-rate samples the caller hears whatever the call does now: on a line whose
        far end can be cleared, what it has confirmed played; on RTP, all that was sent."""
        ...

    @property
    def queued_total(self) -> int:
        """Line-rate samples queued since the call started: where the next audio begins."""
        ...

    @property
    def queued_samples(self) -> int:
        """Line-rate samples waiting to be sent."""
        ...

    @property
    def played_samples(self) -> int:
        """Line-rate samples known to have played (up to the last mark played)."""
        ...

    @property
    def played_seconds(self) -> float:
        """:attr:`played_samples` in seconds."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the call (idempotent); the iteration ends."""
        ...


CallT = TypeVar("CallT", bound=CallSurface)
"""A concrete call type, for callbacks that receive the very call a handler was given."""


if TYPE_CHECKING:

    def _both_are_call_surfaces(call: Call, rtp: RtpCall) -> tuple[CallSurface, CallSurface]:
        # mypy checks here that both transports provide the whole surface
        return call, rtp
