"""Plivo Audio Streams (``<Stream bidirectional="true">``).

Follows https://plivo.com/docs/voice/audio-streaming/audio-streaming (the messages both
ways), https://docs.plivo.com/docs/voice/xml/audiostream (the XML element and its
``contentType``), and the event pages
https://docs.plivo.com/docs/voice/xml/audiostream/stream-events-to-plivo/play-audio-event,
https://plivo.com/docs/voice/xml/the-stream-element/checkpoint-event and
https://docs.plivo.com/docs/voice/xml/audiostream/stream-events-to-plivo/clear-audio-stream.

JSON text frames with an ``event`` field; ``sequenceNumber`` and ``chunk`` are numbers.

From Plivo: ``start`` (first message, no ``connected``: ``start.callId``, ``streamId``,
``accountId``, ``tracks``, ``mediaFormat`` with ``encoding`` ``audio/x-mulaw`` or
``audio/x-l16`` and ``sampleRate`` 8000/16000; ``extra_headers`` beside it), ``media``
(``streamId``, ``media.track``, ``timestamp``, ``chunk``, base64 ``payload``), ``dtmf``,
``playedStream`` (``name``: every ``playAudio`` before the checkpoint of that name has
played; Plivo's support article on checkpoints calls the reply ``played``, which is
accepted too), ``clearedAudio`` (the buffer was flushed) and ``stop``.

To Plivo: ``{"event": "playAudio", "media": {"contentType": "audio/x-mulaw",
"sampleRate": 8000, "payload": <base64>}}`` (``sampleRate`` a number),
``{"event": "checkpoint", "streamId": ..., "name": ...}`` and
``{"event": "clearAudio", "streamId": ...}``.

The page lists ``dtmf`` without its fields; the digit is read from ``dtmf.digit``, or
from a top-level ``digit``.

L16 is taken as little-endian 16-bit PCM; Plivo's pages call it raw 16-bit linear audio
without stating the byte order.
"""

from __future__ import annotations

from typing import ClassVar

from voxwire.errors import RemoteProtocolError
from voxwire.protocols.base import Base64MediaCodec, Outbound
from voxwire.protocols.events import (
    CallStarted,
    Cleared,
    Dtmf,
    Encoding,
    Event,
    MarkPlayed,
    MediaFormat,
    Stopped,
)
from voxwire.protocols.parsing import Skip, dumps, get_int, get_obj, get_str, parse_json_object

__all__ = ["PlivoCodec"]

_ENCODINGS: dict[str, Encoding] = {"audio/x-mulaw": "mulaw", "audio/x-l16": "l16"}


class PlivoCodec(Base64MediaCodec):
    """Sans-I/O codec for one Plivo audio stream; see the module docstring."""

    name: ClassVar[str] = "plivo"
    default_rate: ClassVar[int] = 8000
    rates: ClassVar[tuple[int, ...]] = (8000, 16000)

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        msg = parse_json_object(data)
        event = get_str(msg, "event")
        if event == "media":
            if self.started is None:
                raise Skip("media_before_start", "media before the start message")
            media = get_obj(msg, "media")
            return [
                self._payload_audio(
                    get_str(media, "payload"),
                    track=get_str(media, "track", "inbound"),
                    sequence=get_int(media, "chunk"),
                    timestamp_ms=get_int(media, "timestamp"),
                )
            ]
        if event == "start":
            return self._on_start(msg)
        if self.started is None and event in (
            "dtmf",
            "playedStream",
            "clearedAudio",
            "stop",
        ):
            raise Skip("media_before_start", f"{event} before the start message")
        if event == "dtmf":
            dtmf = msg.get("dtmf")
            digit = get_str(dtmf, "digit") if isinstance(dtmf, dict) else get_str(msg, "digit")
            return [Dtmf(digit)]
        if event in ("playedStream", "played"):
            return [MarkPlayed(get_str(msg, "name"))]
        if event == "clearedAudio":
            return [Cleared()]
        if event == "stop":
            self.stopped = True
            return [Stopped()]
        raise Skip("unknown_event", f"unknown event {event!r:.40}")

    def _on_start(self, msg: dict[str, object]) -> list[Event]:
        start = get_obj(msg, "start")
        fmt = get_obj(start, "mediaFormat")
        encoding = get_str(fmt, "encoding")
        if encoding not in _ENCODINGS:
            raise RemoteProtocolError(
                f"expected encoding audio/x-mulaw or audio/x-l16, got {encoding!r:.40}"
            )
        rate = get_int(fmt, "sampleRate", required=True)
        assert rate is not None
        stream_id = get_str(start, "streamId", get_str(msg, "streamId", ""))
        if not stream_id:
            raise Skip("malformed", "start without a streamId")
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise Skip("malformed", f"start.tracks: expected a list of strings, got {tracks!r:.40}")
        meta: dict[str, object] = {k: v for k, v in start.items() if k != "mediaFormat"}
        extra = msg.get("extra_headers")
        custom = _parse_extra_headers(extra) if isinstance(extra, str) else {}
        if extra is not None:
            meta["extra_headers"] = extra
        return self._start(
            CallStarted(
                stream_id=stream_id,
                call_id=get_str(start, "callId", ""),
                media_format=MediaFormat(_ENCODINGS[encoding], rate),
                tracks=tuple(tracks),
                custom_parameters=custom,
                metadata=meta,
            )
        )

    def _sid(self) -> str:
        assert self.started is not None
        return self.started.stream_id

    def _payload_messages(self, payload: str) -> list[Outbound]:
        assert self.started is not None
        fmt = self.started.media_format
        content_type = "audio/x-mulaw" if fmt.encoding == "mulaw" else "audio/x-l16"
        media = {
            "contentType": content_type,
            "sampleRate": fmt.sample_rate,
            "payload": payload,
        }
        return [dumps({"event": "playAudio", "media": media})]

    def _mark_messages(self, name: str) -> list[Outbound]:
        return [dumps({"event": "checkpoint", "streamId": self._sid(), "name": name})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"event": "clearAudio", "streamId": self._sid()})]


def _parse_extra_headers(text: str) -> dict[str, str]:
    """``"a=1;b=2"`` (or comma-separated, as the XML attribute is written) to a dict."""
    out: dict[str, str] = {}
    for part in text.replace(",", ";").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out
