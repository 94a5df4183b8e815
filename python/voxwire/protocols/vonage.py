"""Vonage Voice API WebSockets (NCCO ``connect`` to a ``websocket`` endpoint).

Follows https://developer.vonage.com/en/voice/voice-api/concepts/websockets and the NCCO
reference https://developer.vonage.com/en/voice/voice-api/ncco-reference.

The first message is a JSON text frame ``{"event": "websocket:connected",
"content-type": "audio/l16;rate=16000", ...}`` carrying the ``headers`` the NCCO set; after
it, audio flows both ways as binary frames of 16-bit little-endian linear PCM, mono,
exactly 20 ms each: 640 bytes at 16 kHz, 320 bytes at 8 kHz (24 kHz gives 960).
Frames of any other size are counted and skipped.

Text frames from Vonage after the first: ``websocket:dtmf`` (``digit``, ``duration``),
``websocket:cleared`` (the playback buffer was flushed) and ``websocket:notify``
(``payload``: the audio queued before a ``notify`` action has played).

To Vonage: binary 20 ms frames, ``{"action": "clear"}`` and
``{"action": "notify", "payload": {"name": ...}}`` as the mark.

The stored copy of the page confirms these commands and events and the binary audio
format; the field carrying the notify payload (``payload``) and the top-level ``digit``
and ``duration`` of ``websocket:dtmf`` are read from Vonage's examples as published and
from third-party integrations, not from a stored copy.

Vonage has no stream identifier; ``CallStarted.stream_id`` and ``call_id`` come from a
``uuid`` header when the NCCO passes one, else they are empty.
"""

from __future__ import annotations

from typing import ClassVar

from voxwire._types import PCM
from voxwire.errors import LocalProtocolError, RemoteProtocolError
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.events import (
    CallStarted,
    Cleared,
    Connected,
    Dtmf,
    Event,
    MarkPlayed,
    MediaFormat,
)
from voxwire.protocols.parsing import (
    Skip,
    dumps,
    get_int,
    get_obj,
    get_str,
    parse_json_object,
    str_mapping,
)
from voxwire.protocols.payload import encode_payload

__all__ = ["VonageCodec", "parse_content_type"]

_RATES = (8000, 16000, 24000)


def parse_content_type(value: str) -> int:
    """The rate of an ``audio/l16;rate=N`` content type, or raise RemoteProtocolError."""
    kind, _, params = value.partition(";")
    if kind.strip().lower() != "audio/l16":
        raise RemoteProtocolError(f"expected content-type audio/l16;rate=N, got {value!r:.60}")
    for param in params.split(";"):
        key, _, rate = param.partition("=")
        if key.strip().lower() == "rate" and rate.strip().isdigit():
            hz = int(rate.strip())
            if hz in _RATES:
                return hz
            raise RemoteProtocolError(f"expected rate 8000, 16000 or 24000, got {hz}")
    raise RemoteProtocolError(f"content-type without a rate: {value!r:.60}")


class VonageCodec(MediaStreamCodec):
    """Sans-I/O codec for one Vonage WebSocket call leg; see the module docstring."""

    name: ClassVar[str] = "vonage"
    default_rate: ClassVar[int] = 16000
    rates: ClassVar[tuple[int, ...]] = _RATES

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        if isinstance(data, bytes):
            if self.started is None:
                raise Skip("media_before_start", "audio before websocket:connected")
            expected = self.started.media_format.frame_bytes(20)
            if len(data) != expected:
                raise Skip(
                    "bad_frame_size",
                    f"expected a {expected}-byte 20 ms frame, got {len(data)} bytes",
                )
            return [self._audio_event(data)]
        msg = parse_json_object(data)
        event = get_str(msg, "event")
        if event == "websocket:connected":
            rate = parse_content_type(get_str(msg, "content-type"))
            headers = {k: v for k, v in msg.items() if k not in ("event", "content-type")}
            nested = headers.get("headers")
            params = str_mapping(nested, "headers") if isinstance(nested, dict) else {}
            params.update({k: v for k, v in headers.items() if isinstance(v, str)})
            uuid = params.get("uuid", "")
            started = CallStarted(
                stream_id=uuid,
                call_id=uuid,
                media_format=MediaFormat("l16", rate),
                custom_parameters=params,
                metadata=headers,
            )
            return [Connected("websocket", ""), *self._start(started)]
        if self.started is None:
            raise Skip("media_before_start", f"{event!r:.40} before websocket:connected")
        if event == "websocket:dtmf":
            return [Dtmf(get_str(msg, "digit"), get_int(msg, "duration"))]
        if event == "websocket:cleared":
            return [Cleared()]
        if event == "websocket:notify":
            payload = get_obj(msg, "payload")
            return [MarkPlayed(get_str(payload, "name"))]
        raise Skip("unknown_event", f"unknown event {event!r:.40}")

    def _audio_messages(self, pcm: PCM) -> list[Outbound]:
        assert self.started is not None
        fmt = self.started.media_format
        samples = fmt.sample_rate // 50
        if len(pcm) % samples:
            raise LocalProtocolError(
                f"Vonage takes whole 20 ms frames of {samples} samples, got {len(pcm)} samples"
            )
        raw = encode_payload(pcm, fmt)
        step = samples * 2
        return [raw[i : i + step] for i in range(0, len(raw), step)]

    def _mark_messages(self, name: str) -> list[Outbound]:
        return [dumps({"action": "notify", "payload": {"name": name}})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"action": "clear"})]
