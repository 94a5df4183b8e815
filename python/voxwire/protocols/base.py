"""The shared machinery of the sans-I/O media-stream codecs.

A codec is one object per call. It never touches a socket or a clock:

* ``receive(data, now)`` takes one WebSocket message (``str`` for a text frame, ``bytes``
  for a binary frame; for AudioSocket, any chunk of the TCP byte stream) and returns the
  :mod:`~voxwire.protocols.events` it carries;
* ``send_audio(pcm)``, ``send_mark(name)`` and ``send_clear()`` return the messages to
  write, ``str`` to go out as a text frame and ``bytes`` as a binary frame;
* ``get_timer()`` / ``handle_timer(now)`` release audio a codec holds back (only the
  Telnyx reorder buffer does).

Protocol facts
--------------
What a protocol can do is stated once, as class attributes of its codec
(:class:`MediaStreamCodec`: ``transport``, ``subprotocols``, ``supports_marks``,
``supports_clear``, ``default_rate``, ``rates``, ``frame_ms``), and
:data:`voxwire.protocols.registry.CODECS` lists the codecs; see that module.

Layout
------
This module holds the codec base classes (:class:`MediaStreamCodec`,
:class:`Base64MediaCodec`) and the wire types. The helpers they build on live by role:
:mod:`voxwire.protocols.parsing` (``Skip`` and the JSON readers and writers),
:mod:`voxwire.protocols.payload` (payload bytes to and from PCM16) and
:mod:`voxwire.protocols.stats` (:class:`SessionStats`). Every name this module offered
before the split is still importable from here.

Bad input
---------
Input that breaks the protocol in a way the session survives (malformed JSON, bad base64,
a wrong frame size, an unknown event, media before the start message, a text frame where
binary was expected) is *skipped*: the message yields no event and is counted in
:class:`SessionStats` under its kind, with the first reason of each kind kept for one log
line. Input after which the session cannot go on (a second start for another stream, a
corrupt AudioSocket byte stream, more than ``max_skipped`` skipped messages, a start
message whose sample rate is outside :data:`MIN_LINE_RATE` .. :data:`MAX_LINE_RATE`, does
not give whole frames of ``frame_ms``, or that the resampler hook refuses) raises
:class:`~voxwire.errors.RemoteProtocolError`. Asking a codec to send what its protocol
does not allow raises :class:`~voxwire.errors.LocalProtocolError`. Nothing else escapes.

Resampling
----------
Codecs decode to PCM16 at the line rate. The one place a resampler plugs in is the
``resampler`` argument, a :data:`ResamplerFactory`: given it and a ``pipeline_rate``, the
codec creates one stateful resampler per direction when the stream's line rate becomes
known, and :class:`~voxwire.protocols.events.Audio` events then carry pipeline-rate PCM;
``send_audio(pcm, sample_rate=...)`` converts the other way. voxwire's native resampler is
meant to be passed here; without one, a rate mismatch is a ``ValueError``.

Native media path
-----------------
The JSON + base64 codecs (:class:`Base64MediaCodec`: Twilio, Telnyx, Plivo, Exotel, Teler)
turn a payload into PCM at the delivered rate, and PCM into a payload, in one native call
(:class:`voxwire.media_path.MediaDecoder` / :class:`~voxwire.media_path.MediaEncoder`)
whenever the result is the same as the step-by-step path: when no resampling is needed, or
when the hook is :class:`voxwire.Resampler` itself (whose default "voice" preset the native
path uses). Any other factory is called as before. ``send_audio(pcm, sample_rate)`` then keeps
its own resampler per source rate, separate from the one :meth:`MediaStreamCodec.line_pcm`
uses. The native path reads base64 to the letter of RFC 4648, so it also skips (as
``bad_base64``) text that is not the canonical base64 of its bytes (non-zero leftover bits
before the padding, or ``=`` after a whole group), which no provider sends and the
step-by-step path lets through.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal, Protocol

import numpy as np

from voxwire import _core
from voxwire._types import PCM as PCM
from voxwire.errors import LocalProtocolError, PayloadError, RemoteProtocolError
from voxwire.media_path import MediaDecoder, MediaEncoder, WireEncoding
from voxwire.protocols.events import Audio, CallStarted, Event, MediaFormat
from voxwire.protocols.parsing import Skip as Skip
from voxwire.protocols.parsing import b64decode as b64decode
from voxwire.protocols.parsing import b64encode as b64encode
from voxwire.protocols.parsing import dumps as dumps
from voxwire.protocols.parsing import get_int as get_int
from voxwire.protocols.parsing import get_obj as get_obj
from voxwire.protocols.parsing import get_str as get_str
from voxwire.protocols.parsing import parse_json_object as parse_json_object
from voxwire.protocols.parsing import str_mapping as str_mapping
from voxwire.protocols.payload import as_pcm as as_pcm
from voxwire.protocols.payload import decode_payload as decode_payload
from voxwire.protocols.payload import encode_payload as encode_payload
from voxwire.protocols.stats import SessionStats

__all__ = [
    "MAX_LINE_RATE",
    "MIN_LINE_RATE",
    "Base64MediaCodec",
    "MediaStreamCodec",
    "Outbound",
    "Resampler",
    "ResamplerFactory",
    "SessionStats",
    "Transport",
]

Outbound = str | bytes
"""One message to send: ``str`` as a WebSocket text frame, ``bytes`` as a binary frame."""

MIN_LINE_RATE = 8000
"""Lowest line rate in Hz a start message may announce (lower is refused as a protocol
error): telephony's narrowest band. Below it the audio an agent plays (TTS at 16-48 kHz)
could not be brought to the line rate in one resampling step."""
MAX_LINE_RATE = 384000
"""Highest line rate in Hz a start message may announce."""

Transport = Literal["websocket", "tcp"]
"""What carries a protocol's messages: WebSocket frames, or a plain TCP byte stream."""


class Resampler(Protocol):
    """A stateful mono PCM16 rate converter for one stream and one direction."""

    def process(self, pcm: PCM) -> PCM:
        """Convert the next chunk; state carries over between calls."""
        ...


ResamplerFactory = Callable[[int, int], Resampler]
"""``factory(in_rate, out_rate)`` returns a new :class:`Resampler`: the resampler hook."""


class MediaStreamCodec(ABC):
    """Base class of the per-call protocol objects; see the module docstring."""

    #: Short protocol name, the key in :data:`voxwire.protocols.CODECS`, as used by the
    #: adapters and the command line.
    name: ClassVar[str]
    #: What carries the messages: ``"websocket"`` (text and binary frames) or ``"tcp"`` (a
    #: plain byte stream, which ``receive`` takes in chunks of any size).
    transport: ClassVar[Transport] = "websocket"
    #: WebSocket subprotocols the provider asks for when it connects; a server accepts them.
    subprotocols: ClassVar[tuple[str, ...]] = ()
    #: Whether the provider echoes marks/checkpoints (else playback is tracked locally).
    supports_marks: ClassVar[bool] = True
    #: Whether the protocol has a message that drops the provider's queued audio (else
    #: ``send_clear`` returns no message and only the local queue is emptied).
    supports_clear: ClassVar[bool] = True
    #: Line rate in Hz of the protocol's usual set-up (one of :attr:`rates`).
    default_rate: ClassVar[int] = 8000
    #: Line rates in Hz a stream of this protocol is known to run at.
    rates: ClassVar[tuple[int, ...]] = (8000,)
    #: Duration in ms of one outbound audio message as the pacer should cut it.
    frame_ms: ClassVar[int] = 20

    def __init__(
        self,
        *,
        pipeline_rate: int | None = None,
        resampler: ResamplerFactory | None = None,
        max_skipped: int = 1000,
    ) -> None:
        if pipeline_rate is not None and pipeline_rate <= 0:
            raise ValueError(f"pipeline_rate must be positive, got {pipeline_rate}")
        if pipeline_rate is not None and resampler is None:
            raise ValueError(
                "pipeline_rate needs a resampler: pass resampler=<factory(in_rate, out_rate)>"
            )
        self.stats = SessionStats()
        self.started: CallStarted | None = None
        self.stopped = False
        self.pipeline_rate = pipeline_rate
        self.max_skipped = max_skipped
        self._resampler_factory = resampler
        self._inbound: Resampler | None = None
        self._outbound: dict[int, Resampler] = {}

    # --- inbound ---------------------------------------------------------------------

    @property
    def media_format(self) -> MediaFormat | None:
        """The line format, once the stream started."""
        return self.started.media_format if self.started else None

    def receive(self, data: str | bytes, now: float) -> list[Event]:
        """Parse one message (or byte-stream chunk) received at time ``now`` (seconds)."""
        if not isinstance(data, (str, bytes)):
            raise TypeError(f"expected str or bytes, got {type(data).__name__}")
        self.stats.messages_in += 1
        self.stats.bytes_in += len(data)
        try:
            if self.stopped:
                raise Skip("after_stop", "message after the stream stopped")
            return self._receive(data, now)
        except Skip as skip:
            self.skip(skip.kind, skip.reason)
            return []

    def skip(self, kind: str, reason: str) -> None:
        """Count one skipped message; raise once more than ``max_skipped`` were skipped."""
        self.stats.note(kind, reason)
        if self.stats.skipped > self.max_skipped:
            raise RemoteProtocolError(
                f"{self.stats.skipped} bad messages, more than the {self.max_skipped} "
                f"allowed; first of each kind: {self.stats.first_reason}"
            )

    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next be called, or None."""
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """Release events that were waiting for time to pass."""
        return []

    @abstractmethod
    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        """Parse one message; raise :class:`Skip` to drop it."""

    def _start(self, started: CallStarted) -> list[Event]:
        """Record the start message (once) and set up the inbound resampler."""
        if self.started is not None:
            if started.stream_id == self.started.stream_id:
                raise Skip("duplicate_start", f"start repeated for stream {started.stream_id!r}")
            raise RemoteProtocolError(
                f"second start for stream {started.stream_id!r} while stream "
                f"{self.started.stream_id!r} is running"
            )
        fmt = started.media_format
        if fmt.channels != 1:
            raise RemoteProtocolError(f"expected mono audio, got {fmt.channels} channels")
        rate = fmt.sample_rate
        if not MIN_LINE_RATE <= rate <= MAX_LINE_RATE:
            raise RemoteProtocolError(
                f"expected a sample rate from {MIN_LINE_RATE} to {MAX_LINE_RATE} Hz, got {rate}"
            )
        if rate * self.frame_ms % 1000:
            raise RemoteProtocolError(
                f"sample rate {rate} Hz does not give whole {self.frame_ms} ms frames"
            )
        if self.pipeline_rate is not None and self.pipeline_rate != rate:
            try:
                self._inbound = self._new_resampler(rate, self.pipeline_rate)
            except (ValueError, TypeError, OverflowError) as exc:
                # the resampler refuses this pair: the peer's start message is at fault
                raise RemoteProtocolError(
                    f"sample rate {rate} Hz cannot be converted to {self.pipeline_rate} Hz: {exc}"
                ) from None
        self.started = started
        return [started]

    def _audio_pcm(self, raw: bytes) -> tuple[PCM, PCM, int]:
        """Decode wire bytes: (line-rate PCM, PCM at the delivered rate, delivered rate)."""
        if self.started is None:
            raise Skip("media_before_start", "audio before the start message")
        fmt = self.started.media_format
        pcm = decode_payload(raw, fmt)
        self.stats.audio_chunks_in += 1
        self.stats.audio_samples_in += len(pcm)
        if self._inbound is not None:
            assert self.pipeline_rate is not None
            return pcm, self._inbound.process(pcm), self.pipeline_rate
        return pcm, pcm, fmt.sample_rate

    def _audio_event(
        self,
        raw: bytes,
        *,
        track: str = "inbound",
        sequence: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Audio:
        """Decode wire bytes into an :class:`Audio` event (the inbound resampler hook)."""
        _, pcm, rate = self._audio_pcm(raw)
        assert self.started is not None
        line_rate = self.started.media_format.sample_rate
        return Audio(pcm, rate, line_rate, track, sequence, timestamp_ms)

    def _new_resampler(self, in_rate: int, out_rate: int) -> Resampler:
        if self._resampler_factory is None:
            raise ValueError(
                f"converting {in_rate} Hz to {out_rate} Hz needs a resampler: pass "
                "resampler=<factory(in_rate, out_rate)> to the codec"
            )
        return self._resampler_factory(in_rate, out_rate)

    # --- outbound --------------------------------------------------------------------

    def _require_started(self, what: str) -> CallStarted:
        if self.stopped:
            raise LocalProtocolError(f"cannot send {what}: the stream has stopped")
        if self.started is None:
            raise LocalProtocolError(f"cannot send {what} before the stream has started")
        return self.started

    def line_pcm(self, pcm: object, sample_rate: int | None = None) -> PCM:
        """Validate outbound PCM and bring it to the line rate through the resampler hook."""
        started = self._require_started("audio")
        data = as_pcm(pcm)
        line_rate = started.media_format.sample_rate
        if sample_rate is None or sample_rate == line_rate:
            return data
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        resampler = self._outbound.get(sample_rate)
        if resampler is None:
            resampler = self._outbound[sample_rate] = self._new_resampler(sample_rate, line_rate)
        return resampler.process(data)

    def send_audio(self, pcm: object, sample_rate: int | None = None) -> list[Outbound]:
        """Messages carrying ``pcm`` (int16, mono, at ``sample_rate`` or the line rate)."""
        line = self.line_pcm(pcm, sample_rate)
        if len(line) == 0:
            return []
        out = self._audio_messages(line)
        self.stats.audio_samples_out += len(line)
        self.stats.messages_out += len(out)
        return out

    def send_mark(self, name: str) -> list[Outbound]:
        """Messages asking the provider to echo ``name`` once the audio before it played."""
        self._require_started("a mark")
        if not isinstance(name, str) or not name:
            raise LocalProtocolError(f"a mark needs a non-empty string name, got {name!r}")
        if not self.supports_marks:
            raise LocalProtocolError(f"the {self.name} protocol has no marks")
        out = self._mark_messages(name)
        self.stats.marks_out += 1
        self.stats.messages_out += len(out)
        return out

    def send_clear(self) -> list[Outbound]:
        """Messages asking the provider to drop the audio it has queued (barge-in)."""
        self._require_started("clear")
        out = self._clear_messages()
        self.stats.clears_out += 1
        self.stats.messages_out += len(out)
        return out

    def send_hangup(self) -> list[Outbound]:
        """Messages ending the stream from this side, where the protocol has them."""
        return []

    @abstractmethod
    def _audio_messages(self, pcm: PCM) -> list[Outbound]: ...

    def _mark_messages(self, name: str) -> list[Outbound]:  # pragma: no cover - per codec
        raise LocalProtocolError(f"the {self.name} protocol has no marks")

    @abstractmethod
    def _clear_messages(self) -> list[Outbound]: ...


def _wire_encoding(fmt: MediaFormat) -> WireEncoding:
    if fmt.encoding == "l16":
        return "l16be" if fmt.big_endian else "l16le"
    return fmt.encoding


def _payload_bytes(payload: str) -> int:
    """Bytes a valid base64 payload decodes to."""
    return len(payload) // 4 * 3 - payload.count("=", len(payload) - 2)


class Base64MediaCodec(MediaStreamCodec):
    """A codec whose audio travels as base64 text in JSON: the native media path.

    Subclasses call :meth:`_payload_audio` with the payload text of an inbound media
    message and implement :meth:`_payload_messages` to wrap an outbound payload; see the
    module docstring for when the one-call native path is taken.
    """

    def __init__(
        self,
        *,
        pipeline_rate: int | None = None,
        resampler: ResamplerFactory | None = None,
        max_skipped: int = 1000,
    ) -> None:
        super().__init__(pipeline_rate=pipeline_rate, resampler=resampler, max_skipped=max_skipped)
        self._decoder: MediaDecoder | None = None
        self._encoders: dict[int, MediaEncoder] = {}
        # the decoder's (pipeline rate, line rate, bytes per sample), read once
        self._decoded_as = (0, 0, 1)

    def _native_ok(self, in_rate: int, out_rate: int) -> bool:
        """Whether the native path gives what the resampler hook would for this pair."""
        if in_rate == out_rate:
            return True
        factory = self._resampler_factory
        return isinstance(factory, type) and issubclass(factory, _core.Resampler)

    def _start(self, started: CallStarted) -> list[Event]:
        events = super()._start(started)
        rate = started.media_format.sample_rate
        target = self.pipeline_rate if self.pipeline_rate is not None else rate
        if self._native_ok(rate, target):
            try:
                self._decoder = MediaDecoder(_wire_encoding(started.media_format), rate, target)
            except ValueError:  # a rate the native resampler refuses: the hook decides
                self._decoder = None
            else:
                self._inbound = None
                self._decoded_as = (target, rate, started.media_format.bytes_per_sample)
        return events

    def _payload_audio(
        self,
        payload: str,
        *,
        track: str = "inbound",
        sequence: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Audio:
        """An :class:`Audio` event from one message's base64 payload, or raise Skip."""
        decoder = self._decoder
        if decoder is None:
            return self._audio_event(
                b64decode(payload), track=track, sequence=sequence, timestamp_ms=timestamp_ms
            )
        if not payload:
            raise Skip("bad_frame_size", "empty audio payload")
        try:
            pcm = decoder.decode(payload)
        except PayloadError as exc:
            if exc.reason == "odd_length":
                raise Skip("bad_frame_size", f"L16 payload is not whole samples: {exc}") from None
            raise Skip("bad_base64", f"payload is not valid base64: {exc}") from None
        pipeline_rate, line_rate, width = self._decoded_as
        stats = self.stats
        stats.audio_chunks_in += 1
        stats.audio_samples_in += _payload_bytes(payload) // width
        return Audio(pcm, pipeline_rate, line_rate, track, sequence, timestamp_ms)

    def send_audio(self, pcm: object, sample_rate: int | None = None) -> list[Outbound]:
        """Messages carrying ``pcm`` (int16, mono, at ``sample_rate`` or the line rate)."""
        started = self._require_started("audio")
        line_rate = started.media_format.sample_rate
        rate = line_rate if sample_rate is None else sample_rate
        if rate <= 0 or not self._native_ok(rate, line_rate):
            return super().send_audio(pcm, sample_rate)
        encoder = self._encoders.get(rate)
        if encoder is None:
            try:
                encoder = MediaEncoder(_wire_encoding(started.media_format), rate, line_rate)
            except ValueError:
                return super().send_audio(pcm, sample_rate)
            self._encoders[rate] = encoder
        payload = encoder.encode(np.ascontiguousarray(as_pcm(pcm)))
        if not payload:
            return []
        out = self._payload_messages(payload)
        width = started.media_format.bytes_per_sample
        self.stats.audio_samples_out += _payload_bytes(payload) // width
        self.stats.messages_out += len(out)
        return out

    def _audio_messages(self, pcm: PCM) -> list[Outbound]:
        assert self.started is not None
        return self._payload_messages(b64encode(encode_payload(pcm, self.started.media_format)))

    @abstractmethod
    def _payload_messages(self, payload: str) -> list[Outbound]:
        """The messages carrying one base64 audio payload."""
