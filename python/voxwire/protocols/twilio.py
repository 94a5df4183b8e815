"""Twilio Media Streams (bidirectional, ``<Connect><Stream>``).

Follows https://www.twilio.com/docs/voice/media-streams/websocket-messages and, for the
TwiML that opens the stream, https://www.twilio.com/docs/voice/twiml/stream.

Every message is a JSON text frame with an ``event`` field.

From Twilio: ``connected`` (``protocol``, ``version``), then ``start`` once
(``sequenceNumber``; ``start.streamSid``, ``accountSid``, ``callSid``, ``tracks``,
``customParameters``, ``mediaFormat`` with ``encoding`` ``"audio/x-mulaw"``,
``sampleRate`` 8000 and ``channels`` 1), then ``media`` (``media.track``, ``chunk``,
``timestamp``, base64 ``payload``; 20 ms of mu-law each), ``dtmf`` (``dtmf.track``,
``dtmf.digit``), ``mark`` (``mark.name``, echoed when the audio before it has played, or
returned when a ``clear`` dropped it) and ``stop`` (``stop.accountSid``, ``callSid``).
Counters (``sequenceNumber``, ``chunk``, ``timestamp``) are strings.

To Twilio: ``{"event": "media", "streamSid": ..., "media": {"payload": <base64 mu-law>}}``,
``{"event": "mark", "streamSid": ..., "mark": {"name": ...}}`` and
``{"event": "clear", "streamSid": ...}``. Anything else makes Twilio close the stream
(error 31924), so the codec sends nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from xml.sax.saxutils import quoteattr

from voxwire.errors import RemoteProtocolError
from voxwire.protocols.base import Base64MediaCodec, Outbound
from voxwire.protocols.events import (
    CallStarted,
    Connected,
    Dtmf,
    Encoding,
    Event,
    MarkPlayed,
    MediaFormat,
    Stopped,
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

__all__ = ["TwilioCodec", "connect_stream_twiml"]

_ENCODINGS: dict[str, Encoding] = {"audio/x-mulaw": "mulaw"}


class TwilioCodec(Base64MediaCodec):
    """Sans-I/O codec for one Twilio Media Stream; see the module docstring."""

    name: ClassVar[str] = "twilio"
    default_rate: ClassVar[int] = 8000
    rates: ClassVar[tuple[int, ...]] = (8000,)

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        msg = parse_json_object(data)
        event = get_str(msg, "event")
        if event == "media":
            return self._media(msg)
        if event == "connected":
            return [Connected(get_str(msg, "protocol", ""), get_str(msg, "version", ""))]
        if event == "start":
            return self._on_start(msg)
        if event == "dtmf":
            self._check_started(event)
            return [Dtmf(get_str(get_obj(msg, "dtmf"), "digit"))]
        if event == "mark":
            self._check_started(event)
            return [MarkPlayed(get_str(get_obj(msg, "mark"), "name"))]
        if event == "stop":
            self._check_started(event)
            self.stopped = True
            return [Stopped(get_str(get_obj(msg, "stop", required=False), "reason", ""))]
        raise Skip("unknown_event", f"unknown event {event!r:.40}")

    def _check_started(self, event: str) -> None:
        if self.started is None:
            raise Skip("media_before_start", f"{event} before the start message")

    def _on_start(self, msg: dict[str, object]) -> list[Event]:
        start = get_obj(msg, "start")
        fmt = get_obj(start, "mediaFormat")
        encoding = get_str(fmt, "encoding")
        if encoding not in _ENCODINGS:
            raise RemoteProtocolError(f"expected encoding audio/x-mulaw, got {encoding!r:.40}")
        rate = get_int(fmt, "sampleRate", required=True)
        channels = get_int(fmt, "channels") or 1
        assert rate is not None
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise Skip("malformed", f"start.tracks: expected a list of strings, got {tracks!r:.40}")
        stream_sid = get_str(start, "streamSid", get_str(msg, "streamSid", ""))
        if not stream_sid:
            raise Skip("malformed", "start without a streamSid")
        meta = {k: v for k, v in start.items() if k not in ("mediaFormat", "customParameters")}
        return self._start(
            CallStarted(
                stream_id=stream_sid,
                call_id=get_str(start, "callSid", ""),
                media_format=MediaFormat(_ENCODINGS[encoding], rate, channels),
                tracks=tuple(tracks),
                custom_parameters=str_mapping(start.get("customParameters"), "customParameters"),
                metadata=meta,
            )
        )

    def _media(self, msg: dict[str, object]) -> list[Event]:
        media = get_obj(msg, "media")
        if self.started is None:
            raise Skip("media_before_start", "media before the start message")
        return [
            self._payload_audio(
                get_str(media, "payload"),
                track=get_str(media, "track", "inbound"),
                sequence=get_int(media, "chunk"),
                timestamp_ms=get_int(media, "timestamp"),
            )
        ]

    # --- outbound ----------------------------------------------------------------------

    def _sid(self) -> str:
        assert self.started is not None
        return self.started.stream_id

    def _payload_messages(self, payload: str) -> list[Outbound]:
        return [dumps({"event": "media", "streamSid": self._sid(), "media": {"payload": payload}})]

    def _mark_messages(self, name: str) -> list[Outbound]:
        return [dumps({"event": "mark", "streamSid": self._sid(), "mark": {"name": name}})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"event": "clear", "streamSid": self._sid()})]


def connect_stream_twiml(url: str, parameters: Mapping[str, str] | None = None) -> str:
    """TwiML answering a call with a bidirectional stream to ``url``.

    ``parameters`` become ``<Parameter name=... value=.../>`` nouns, which Twilio passes in
    the start message's ``customParameters`` (https://www.twilio.com/docs/voice/twiml/stream).
    """
    if not url.startswith("wss://"):
        raise ValueError(f"Twilio streams to a wss:// URL, got {url!r}")
    params = "".join(
        f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>"
        for k, v in (parameters or {}).items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(url)}>{params}</Stream></Connect></Response>"
    )
