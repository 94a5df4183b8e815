"""Typed events produced by the sans-I/O media-stream codecs.

Every codec in :mod:`voxwire.protocols` turns provider messages into the same small set of
frozen dataclasses, so the layer above (VAD, STT, an agent) never sees a provider's JSON:

======================  ==========================================================
event                   meaning
======================  ==========================================================
:class:`Connected`      the transport is up; the provider said which protocol version
:class:`CallStarted`    the stream's metadata and :class:`MediaFormat` are known
:class:`Audio`          one inbound chunk as PCM16 (numpy ``int16``) and its rate
:class:`Dtmf`           a key press
:class:`MarkPlayed`     the audio before a mark/checkpoint has played (or was cleared)
:class:`Cleared`        the provider confirmed it flushed its playback buffer
:class:`Stopped`        the stream ended; no further events follow
:class:`RemoteError`    the provider reported an error on the stream
======================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "Audio",
    "CallStarted",
    "Cleared",
    "Connected",
    "Dtmf",
    "Encoding",
    "Event",
    "MarkPlayed",
    "MediaFormat",
    "RemoteError",
    "Stopped",
]

Encoding = Literal["mulaw", "alaw", "l16"]
"""Line encodings the codecs decode: G.711 mu-law, G.711 A-law, and 16-bit linear PCM."""


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """The audio format on the line.

    ``encoding`` is the wire encoding, ``sample_rate`` the line rate in Hz and
    ``channels`` the channel count (voxwire decodes mono streams). ``big_endian`` is only
    meaningful for ``l16``: RTP's L16 (RFC 3551 section 4.5.11) is network byte order,
    while the raw PCM WebSocket dialects send little-endian samples.
    """

    encoding: Encoding
    sample_rate: int
    channels: int = 1
    big_endian: bool = False

    @property
    def bytes_per_sample(self) -> int:
        """Bytes one sample occupies on the wire (1 for G.711, 2 for L16)."""
        return 2 if self.encoding == "l16" else 1

    def frame_bytes(self, ms: int = 20) -> int:
        """Wire bytes in ``ms`` milliseconds of mono audio at this format."""
        return self.sample_rate * ms // 1000 * self.bytes_per_sample * self.channels


@dataclass(frozen=True, slots=True)
class Connected:
    """The provider's first message: the transport is up, the stream not yet started."""

    protocol: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The stream started: who is calling, and in which format the audio will arrive.

    ``stream_id`` is the identifier outbound messages must carry where the protocol asks
    for one; ``call_id`` the provider's call identifier. ``custom_parameters`` are the
    key/value pairs the application attached when it started the stream (strings, as
    every provider sends them); ``metadata`` keeps every other field of the start
    message, untouched, for the layer above.
    """

    stream_id: str
    call_id: str
    media_format: MediaFormat
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class Audio:
    """One chunk of inbound audio, decoded to mono PCM16.

    ``pcm`` is a 1-D numpy ``int16`` array at ``sample_rate``: the line rate, or the
    pipeline rate when the codec was given a resampler (see
    :class:`voxwire.protocols.base.ResamplerFactory`). ``line_rate`` is always the rate on
    the wire. ``sequence`` and ``timestamp_ms`` are the provider's counters when it sends
    them (``None`` otherwise); ``track`` is ``"inbound"`` for the caller's audio.
    """

    pcm: npt.NDArray[np.int16]
    sample_rate: int
    line_rate: int
    track: str = "inbound"
    sequence: int | None = None
    timestamp_ms: int | None = None

    @property
    def duration(self) -> float:
        """Length of the chunk in seconds."""
        return len(self.pcm) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A DTMF key press: ``digit`` is one of ``0-9 * # A-D``."""

    digit: str
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """The audio queued before the mark (checkpoint, notify) ``name`` reached its end.

    ``cleared`` is true when the provider returned the mark because a ``clear`` flushed
    the audio before it, not because that audio played. For protocols whose echo does not
    say which happened, :class:`voxwire.pacing.PacedStream` tells them apart: its
    ``clear`` reports every queued or unanswered mark as cleared at once, and
    ``resolve_mark`` swallows the echoes that come later.
    """

    name: str
    cleared: bool = False


@dataclass(frozen=True, slots=True)
class Cleared:
    """The provider confirmed that it flushed its playback buffer."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """The stream ended; ``reason`` is the provider's, when it gives one."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class RemoteError:
    """The provider reported an error on the stream (the session may go on)."""

    code: str
    detail: str = ""


Event = Connected | CallStarted | Audio | Dtmf | MarkPlayed | Cleared | Stopped | RemoteError
"""Any event a codec returns."""
