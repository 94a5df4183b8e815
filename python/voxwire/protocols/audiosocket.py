"""Asterisk AudioSocket: type-length-value messages over TCP.

Follows https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket and the
protocol definition in the AudioSocket repository (github.com/CyCoreSystems/audiosocket,
README), which adds the DTMF type and the higher sample rates merged into Asterisk 20-23.

Every message is a 3-byte header, a type byte and a big-endian unsigned 16-bit payload
length, then the payload:

======  ========================================================================
type    payload
======  ========================================================================
0x00    none: hang up (closing the socket is also enough)
0x01    the stream's UUID, 16 bytes, binary
0x03    one ASCII DTMF digit
0x10    signed linear 16-bit little-endian mono PCM at 8 kHz
0x11    ... at 12 kHz; 0x12 16 kHz; 0x13 24 kHz; 0x14 32 kHz; 0x15 44.1 kHz;
        0x16 48 kHz; 0x17 96 kHz; 0x18 192 kHz
0xff    an error; Asterisk's codes are one byte, bit-packed: 0x01 caller hung up,
        0x02 frame forwarding error, 0x04 memory allocation error
======  ========================================================================

Asterisk sends the UUID first; :class:`CallStarted` then announces ``sample_rate``, and
is announced once more if the first audio message comes at another rate (newer Asterisk
sends 16/24/48 kHz types). ``receive`` takes any chunk of the TCP byte stream and
returns the events of every complete message in it; a partial message waits for the next
chunk. Audio at another rate than the first audio message's is counted and skipped.
Outbound audio is sent with the type of the stream's rate; there are no marks or clear
on the wire, so playback is tracked locally and ``send_clear`` only
empties the local queue (it returns no message).
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from voxwire._types import PCM
from voxwire.protocols.base import MediaStreamCodec, Outbound, ResamplerFactory, Transport
from voxwire.protocols.events import (
    CallStarted,
    Dtmf,
    Event,
    MediaFormat,
    RemoteError,
    Stopped,
)
from voxwire.protocols.parsing import Skip

__all__ = ["KIND_RATES", "AudioSocketCodec", "Kind", "pack"]


class Kind:
    """AudioSocket message types."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    ERROR = 0xFF


KIND_RATES: dict[int, int] = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
"""Audio message type to sample rate."""

_RATE_KINDS = {rate: kind for kind, rate in KIND_RATES.items()}
_DEFAULT_RATE = 8000  # the classic slin stream
_DTMF = set("0123456789*#ABCDabcd")
_MAX_PAYLOAD = 0xFFFF


def pack(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message."""
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"type must be a byte, got {kind}")
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds 65535")
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + payload


class AudioSocketCodec(MediaStreamCodec):
    """Sans-I/O codec for one AudioSocket connection; see the module docstring.

    ``sample_rate`` is the rate audio is expected at until the first audio message
    says otherwise (8000 for the classic ``slin`` stream).
    """

    name: ClassVar[str] = "audiosocket"
    transport: ClassVar[Transport] = "tcp"
    supports_marks: ClassVar[bool] = False
    supports_clear: ClassVar[bool] = False
    default_rate: ClassVar[int] = _DEFAULT_RATE
    rates: ClassVar[tuple[int, ...]] = tuple(KIND_RATES.values())

    def __init__(
        self,
        *,
        sample_rate: int = _DEFAULT_RATE,
        pipeline_rate: int | None = None,
        resampler: ResamplerFactory | None = None,
        max_skipped: int = 1000,
    ) -> None:
        super().__init__(pipeline_rate=pipeline_rate, resampler=resampler, max_skipped=max_skipped)
        if sample_rate not in _RATE_KINDS:
            raise ValueError(f"sample_rate must be one of {sorted(_RATE_KINDS)}, got {sample_rate}")
        self.sample_rate = sample_rate
        self._buffer = bytearray()
        self._rate_fixed = False

    def receive(self, data: str | bytes, now: float) -> list[Event]:
        if isinstance(data, str):
            raise TypeError("AudioSocket is a byte stream: pass bytes")
        return super().receive(data, now)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message waiting for the rest."""
        return len(self._buffer)

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        assert isinstance(data, bytes)
        self._buffer += data
        out: list[Event] = []
        view = self._buffer
        pos = 0
        while len(view) - pos >= 3 and not self.stopped:
            kind = view[pos]
            length = int.from_bytes(view[pos + 1 : pos + 3], "big")
            if len(view) - pos - 3 < length:
                break
            payload = bytes(view[pos + 3 : pos + 3 + length])
            pos += 3 + length
            try:
                out += self._message(kind, payload)
            except Skip as skip:
                self.skip(skip.kind, skip.reason)
        del self._buffer[:pos]
        if self.stopped:
            self._buffer.clear()
        return out

    def _message(self, kind: int, payload: bytes) -> list[Event]:
        if kind in KIND_RATES:
            if self.started is None:
                raise Skip("media_before_start", "audio before the UUID message")
            rate = KIND_RATES[kind]
            if len(payload) % 2 or not payload:
                raise Skip("bad_frame_size", f"{len(payload)} bytes is not whole PCM16 samples")
            out: list[Event] = []
            if rate != self.started.media_format.sample_rate:
                if self._rate_fixed:
                    line = self.started.media_format.sample_rate
                    raise Skip("bad_frame_size", f"audio at {rate} Hz in a {line} Hz stream")
                out += self._restart_at(rate)
            self._rate_fixed = True
            out.append(self._audio_event(payload))
            return out
        if kind == Kind.UUID:
            if len(payload) != 16:
                raise Skip("malformed", f"expected a 16-byte UUID, got {len(payload)} bytes")
            ident = str(uuid.UUID(bytes=payload))
            started = CallStarted(ident, ident, MediaFormat("l16", self.sample_rate))
            return self._start(started)
        if kind == Kind.DTMF:
            if self.started is None:
                raise Skip("media_before_start", "DTMF before the UUID message")
            digit = payload.decode("latin-1")
            if len(payload) != 1 or digit not in _DTMF:
                raise Skip("malformed", f"expected one DTMF digit, got {payload!r:.20}")
            return [Dtmf(digit.upper())]
        if kind == Kind.HANGUP:
            self.stopped = True
            return [Stopped("hangup")]
        if kind == Kind.ERROR:
            code = payload.hex()
            return [RemoteError(code, _describe_error(payload))]
        raise Skip("unknown_event", f"unknown message type 0x{kind:02x}")

    def _restart_at(self, rate: int) -> list[Event]:
        """The first audio fixes the stream's rate: announce the format again."""
        assert self.started is not None
        old = self.started
        self.started = None
        return self._start(CallStarted(old.stream_id, old.call_id, MediaFormat("l16", rate)))

    # --- outbound ----------------------------------------------------------------------

    def _audio_messages(self, pcm: PCM) -> list[Outbound]:
        assert self.started is not None
        kind = _RATE_KINDS[self.started.media_format.sample_rate]
        raw = pcm.astype("<i2", copy=False).tobytes()
        step = _MAX_PAYLOAD - (_MAX_PAYLOAD % 2)
        return [pack(kind, raw[i : i + step]) for i in range(0, len(raw), step)]

    def _clear_messages(self) -> list[Outbound]:
        return []

    def send_hangup(self) -> list[Outbound]:
        """The hangup message (type 0x00, no payload)."""
        return [pack(Kind.HANGUP)]


def _describe_error(payload: bytes) -> str:
    if len(payload) != 1:
        return "application error"
    names = {0x01: "caller hung up", 0x02: "frame forwarding error", 0x04: "memory error"}
    parts = [text for bit, text in names.items() if payload[0] & bit]
    return ", ".join(parts) or "application error"
