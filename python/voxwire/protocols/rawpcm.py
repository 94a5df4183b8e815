"""voxwire's raw-PCM WebSocket protocol, for browsers and simple clients.

This is voxwire's own dialect, defined here, so a browser can talk to a voxwire server
with an ``AudioWorklet`` and a ``WebSocket`` and nothing else:

* Audio both ways is binary frames of 16-bit little-endian mono PCM (``Int16Array`` on
  every little-endian browser platform), any whole number of samples per frame.
* The client may open with a text frame
  ``{"event": "start", "sampleRate": 16000, "parameters": {...}}``; a binary frame first
  starts the stream at the codec's ``sample_rate`` (default 16000).
* The client may send ``{"event": "dtmf", "digit": "5"}`` and ``{"event": "stop"}``.
* The server sends ``{"event": "mark", "name": ...}``; the client echoes the same message
  once the audio before it has played. The server sends ``{"event": "clear"}``; the client
  drops its queued audio, echoes each pending mark, then answers ``{"event": "cleared"}``.
"""

from __future__ import annotations

from typing import ClassVar

from voxwire._types import PCM
from voxwire.errors import RemoteProtocolError
from voxwire.protocols.base import MediaStreamCodec, Outbound, ResamplerFactory
from voxwire.protocols.events import (
    CallStarted,
    Cleared,
    Dtmf,
    Event,
    MarkPlayed,
    MediaFormat,
    Stopped,
)
from voxwire.protocols.parsing import Skip, dumps, get_int, get_str, parse_json_object, str_mapping
from voxwire.protocols.payload import encode_payload

__all__ = ["RawPcmCodec"]

_RATES = (8000, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_DEFAULT_RATE = 16000


class RawPcmCodec(MediaStreamCodec):
    """Sans-I/O codec for voxwire's raw-PCM WebSocket protocol; see the module docstring."""

    name: ClassVar[str] = "rawpcm"
    default_rate: ClassVar[int] = _DEFAULT_RATE
    rates: ClassVar[tuple[int, ...]] = _RATES

    def __init__(
        self,
        *,
        sample_rate: int = _DEFAULT_RATE,
        stream_id: str = "",
        pipeline_rate: int | None = None,
        resampler: ResamplerFactory | None = None,
        max_skipped: int = 1000,
    ) -> None:
        super().__init__(pipeline_rate=pipeline_rate, resampler=resampler, max_skipped=max_skipped)
        if sample_rate not in _RATES:
            raise ValueError(f"sample_rate must be one of {_RATES}, got {sample_rate}")
        #: the rate a stream that opens with audio (no start message) runs at
        self.sample_rate = sample_rate
        self.stream_id = stream_id

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        if isinstance(data, bytes):
            if len(data) % 2 or not data:
                raise Skip("bad_frame_size", f"{len(data)} bytes is not whole PCM16 samples")
            out: list[Event] = []
            if self.started is None:
                out += self._begin(self.sample_rate, {})
            out.append(self._audio_event(data))
            return out
        msg = parse_json_object(data)
        event = get_str(msg, "event")
        if event == "start":
            rate = get_int(msg, "sampleRate", required=True)
            assert rate is not None
            if rate not in _RATES:
                raise RemoteProtocolError(f"sampleRate must be one of {_RATES}, got {rate}")
            return self._begin(rate, str_mapping(msg.get("parameters"), "parameters"))
        if self.started is None:
            raise Skip("media_before_start", f"{event!r:.40} before start")
        if event == "mark":
            return [MarkPlayed(get_str(msg, "name"))]
        if event == "cleared":
            return [Cleared()]
        if event == "dtmf":
            return [Dtmf(get_str(msg, "digit"))]
        if event == "stop":
            self.stopped = True
            return [Stopped(get_str(msg, "reason", ""))]
        raise Skip("unknown_event", f"unknown event {event!r:.40}")

    def _begin(self, rate: int, params: dict[str, str]) -> list[Event]:
        started = CallStarted(
            stream_id=self.stream_id,
            call_id=self.stream_id,
            media_format=MediaFormat("l16", rate),
            custom_parameters=params,
        )
        return self._start(started)

    def _audio_messages(self, pcm: PCM) -> list[Outbound]:
        assert self.started is not None
        return [encode_payload(pcm, self.started.media_format)]

    def _mark_messages(self, name: str) -> list[Outbound]:
        return [dumps({"event": "mark", "name": name})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"event": "clear"})]
