"""Exotel AgentStream, Voicebot applet (bidirectional).

Follows https://developer.exotel.com/docs/agentstream/websocket-protocol and
https://developer.exotel.com/docs/agentstream/stream-voicebot-applet.

JSON text frames with an ``event`` field and snake_case keys; counters are strings.

From Exotel: ``connected``; ``start`` (``sequence_number``, ``stream_sid``;
``start.stream_sid``, ``call_sid``, ``account_sid``, ``from``, ``to``,
``custom_parameters``, ``media_format`` with ``encoding`` ``"audio/x-raw"``,
``sample_rate`` ``"8000"``/``"16000"``/``"24000"`` and ``bit_rate`` ``"16"``); ``media``
(``media.chunk``, ``timestamp``, base64 ``payload``: raw/slin, 16-bit little-endian mono
PCM); ``dtmf`` (``dtmf.digit``, ``duration``); ``mark`` (``mark.name``, sent when the
audio before it has played); ``stop``.

To Exotel: ``{"event": "media", "stream_sid": ..., "media": {"payload": <base64 PCM>}}``,
``{"event": "mark", "stream_sid": ..., "mark": {"name": ...}}`` and
``{"event": "clear", "stream_sid": ...}``. The documentation lists these three outbound
events; the stored copy of the page shows their field names only through the inbound
examples, so the outbound messages mirror those (``stream_sid`` at the top level, the
body under the event's name). Exotel asks for outbound chunks in multiples of 320 bytes
(20 ms at 8 kHz) and recommends at least 100 ms per message; the pacer's 20 ms frames
satisfy the first rule; a subclass with ``frame_ms = 100`` follows the second.
"""

from __future__ import annotations

from typing import ClassVar

from voxwire.errors import RemoteProtocolError
from voxwire.protocols.base import Base64MediaCodec, Outbound
from voxwire.protocols.events import (
    CallStarted,
    Connected,
    Dtmf,
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

__all__ = ["ExotelCodec"]


class ExotelCodec(Base64MediaCodec):
    """Sans-I/O codec for one Exotel Voicebot stream; see the module docstring."""

    name: ClassVar[str] = "exotel"
    default_rate: ClassVar[int] = 8000
    rates: ClassVar[tuple[int, ...]] = (8000, 16000, 24000)

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
                    sequence=get_int(media, "chunk"),
                    timestamp_ms=get_int(media, "timestamp"),
                )
            ]
        if event == "connected":
            return [Connected()]
        if event == "start":
            return self._on_start(msg)
        if self.started is None and event in ("dtmf", "mark", "stop"):
            raise Skip("media_before_start", f"{event} before the start message")
        if event == "dtmf":
            dtmf = get_obj(msg, "dtmf")
            return [Dtmf(get_str(dtmf, "digit"), get_int(dtmf, "duration"))]
        if event == "mark":
            return [MarkPlayed(get_str(get_obj(msg, "mark"), "name"))]
        if event == "stop":
            self.stopped = True
            return [Stopped(get_str(get_obj(msg, "stop", required=False), "reason", ""))]
        raise Skip("unknown_event", f"unknown event {event!r:.40}")

    def _on_start(self, msg: dict[str, object]) -> list[Event]:
        start = get_obj(msg, "start")
        fmt = get_obj(start, "media_format")
        encoding = get_str(fmt, "encoding")
        if encoding != "audio/x-raw":
            raise RemoteProtocolError(f"expected encoding audio/x-raw, got {encoding!r:.40}")
        bits = get_int(fmt, "bit_rate")
        if bits not in (None, 16):
            raise RemoteProtocolError(f"expected 16-bit samples, got bit_rate {bits}")
        rate = get_int(fmt, "sample_rate", required=True)
        assert rate is not None
        stream_sid = get_str(start, "stream_sid", get_str(msg, "stream_sid", ""))
        if not stream_sid:
            raise Skip("malformed", "start without a stream_sid")
        meta = {k: v for k, v in start.items() if k not in ("media_format", "custom_parameters")}
        return self._start(
            CallStarted(
                stream_id=stream_sid,
                call_id=get_str(start, "call_sid", ""),
                media_format=MediaFormat("l16", rate),
                custom_parameters=str_mapping(start.get("custom_parameters"), "custom_parameters"),
                metadata=meta,
            )
        )

    def _sid(self) -> str:
        assert self.started is not None
        return self.started.stream_id

    def _payload_messages(self, payload: str) -> list[Outbound]:
        return [dumps({"event": "media", "stream_sid": self._sid(), "media": {"payload": payload}})]

    def _mark_messages(self, name: str) -> list[Outbound]:
        return [dumps({"event": "mark", "stream_sid": self._sid(), "mark": {"name": name}})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"event": "clear", "stream_sid": self._sid()})]
