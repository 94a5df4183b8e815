"""Telnyx Media Streaming over WebSocket (bidirectional, RTP mode).

Follows https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket
(the AsyncAPI description of the WebSocket) and
https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming.

All messages are JSON text frames with an ``event`` field and snake_case keys.

From Telnyx: ``connected`` (``version``), ``start`` (``sequence_number``, ``stream_id``;
``start.call_control_id``, ``call_session_id``, ``from``, ``to``, ``custom_parameters``,
``media_format`` with ``encoding`` ``PCMU``/``PCMA``/``L16``..., ``sample_rate``,
``channels``), ``media`` (``media.track``, ``chunk``, ``timestamp``, base64 RTP
``payload`` without the RTP header), ``dtmf`` (``dtmf.digit``), ``mark`` (``mark.name``:
the audio before the mark played, or a ``clear`` returned it), ``error`` and ``stop``.
The stored page names the error frame without its fields; the codec reads ``code`` and
``detail`` (or ``title``) from an object under ``payload`` or ``error``.

Telnyx states that media frame order is not guaranteed and that ``media.chunk``,
``media.timestamp`` and ``sequence_number`` order them, so media goes through a
:class:`~voxwire.protocols.reorder.ReorderBuffer` keyed by ``chunk`` per track (falling
back to ``sequence_number``). Held audio is released by ``handle_timer(now)`` at
``get_timer()``.

To Telnyx: ``{"event": "media", "media": {"payload": <base64>}}`` (20 ms to 30 s of audio
in the stream's bidirectional codec), ``{"event": "mark", "mark": {"name": ...}}`` and
``{"event": "clear"}``.

Decoded encodings: PCMU, PCMA and L16 (taken in network byte order, as the payload of an
RTP L16 stream is, RFC 3551 section 4.5.11). G722, OPUS and AMR-WB streams are refused at
``start`` with a :class:`~voxwire.errors.RemoteProtocolError`: request one of the three
with ``stream_codec`` / ``stream_bidirectional_codec``.
"""

from __future__ import annotations

from typing import ClassVar

from voxwire.errors import RemoteProtocolError
from voxwire.protocols.base import Base64MediaCodec, Outbound, ResamplerFactory
from voxwire.protocols.events import (
    Audio,
    CallStarted,
    Connected,
    Dtmf,
    Encoding,
    Event,
    MarkPlayed,
    MediaFormat,
    RemoteError,
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
from voxwire.protocols.reorder import ReorderBuffer

__all__ = ["TelnyxCodec"]

_ENCODINGS: dict[str, Encoding] = {"PCMU": "mulaw", "PCMA": "alaw", "L16": "l16"}


class TelnyxCodec(Base64MediaCodec):
    """Sans-I/O codec for one Telnyx media stream, with media reordering.

    ``reorder_capacity`` and ``reorder_delay`` bound the reorder buffer: at most that many
    chunks are held, for at most that many seconds, before a gap is given up.
    """

    name: ClassVar[str] = "telnyx"
    default_rate: ClassVar[int] = 8000
    rates: ClassVar[tuple[int, ...]] = (8000, 16000)  # PCMU/PCMA at 8 kHz, L16 at 16 kHz

    def __init__(
        self,
        *,
        pipeline_rate: int | None = None,
        resampler: ResamplerFactory | None = None,
        max_skipped: int = 1000,
        reorder_capacity: int = 8,
        reorder_delay: float = 0.06,
    ) -> None:
        super().__init__(pipeline_rate=pipeline_rate, resampler=resampler, max_skipped=max_skipped)
        self._reorder_capacity = reorder_capacity
        self._reorder_delay = reorder_delay
        self._buffers: dict[str, ReorderBuffer[Audio]] = {}

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        msg = parse_json_object(data)
        event = get_str(msg, "event")
        if event == "media":
            return self._media(msg, now)
        if event == "connected":
            return [Connected("", get_str(msg, "version", ""))]
        if event == "start":
            return self._on_start(msg)
        if self.started is None and event in ("dtmf", "mark", "stop"):
            raise Skip("media_before_start", f"{event} before the start message")
        if event == "dtmf":
            return [Dtmf(get_str(get_obj(msg, "dtmf"), "digit"))]
        if event == "mark":
            return [MarkPlayed(get_str(get_obj(msg, "mark"), "name"))]
        if event == "error":
            err = get_obj(msg, "payload", required=False) or get_obj(msg, "error", required=False)
            code = err.get("code", "")
            return [RemoteError(str(code), get_str(err, "detail", get_str(err, "title", "")))]
        if event == "stop":
            out: list[Event] = []
            for buf in self._buffers.values():
                out += buf.flush()
            self._sync_counters()
            self.stopped = True
            out.append(Stopped())
            return out
        raise Skip("unknown_event", f"unknown event {event!r:.40}")

    def _on_start(self, msg: dict[str, object]) -> list[Event]:
        start = get_obj(msg, "start")
        fmt = get_obj(start, "media_format")
        encoding = get_str(fmt, "encoding")
        if encoding not in _ENCODINGS:
            raise RemoteProtocolError(
                f"expected media_format.encoding PCMU, PCMA or L16, got {encoding!r:.40}"
            )
        rate = get_int(fmt, "sample_rate", required=True)
        assert rate is not None
        channels = get_int(fmt, "channels") or 1
        stream_id = get_str(msg, "stream_id", "")
        if not stream_id:
            raise Skip("malformed", "start without a stream_id")
        meta = {k: v for k, v in start.items() if k not in ("media_format", "custom_parameters")}
        return self._start(
            CallStarted(
                stream_id=stream_id,
                call_id=get_str(start, "call_control_id", ""),
                media_format=MediaFormat(
                    _ENCODINGS[encoding], rate, channels, big_endian=encoding == "L16"
                ),
                custom_parameters=str_mapping(start.get("custom_parameters"), "custom_parameters"),
                metadata=meta,
            )
        )

    def _media(self, msg: dict[str, object], now: float) -> list[Event]:
        if self.started is None:
            raise Skip("media_before_start", "media before the start message")
        media = get_obj(msg, "media")
        track = get_str(media, "track", "inbound")
        chunk = get_int(media, "chunk")
        seq = chunk if chunk is not None else get_int(msg, "sequence_number")
        audio = self._payload_audio(
            get_str(media, "payload"),
            track=track,
            sequence=seq,
            timestamp_ms=get_int(media, "timestamp"),
        )
        if seq is None:
            return [audio]
        buf = self._buffers.get(track)
        if buf is None:
            buf = self._buffers[track] = ReorderBuffer(self._reorder_capacity, self._reorder_delay)
        out: list[Event] = list(buf.push(seq, audio, now))
        self._sync_counters()
        return out

    def get_timer(self) -> float | None:
        deadlines = [d for b in self._buffers.values() if (d := b.deadline()) is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Event]:
        out: list[Event] = []
        for buf in self._buffers.values():
            out += buf.poll(now)
        self._sync_counters()
        return out

    def _sync_counters(self) -> None:
        bufs = self._buffers.values()
        self.stats.reordered = sum(b.reordered for b in bufs)
        self.stats.late_dropped = sum(b.late for b in bufs)
        self.stats.duplicates_dropped = sum(b.duplicates for b in bufs)
        self.stats.gaps = sum(b.gaps for b in bufs)

    # --- outbound ----------------------------------------------------------------------

    def _payload_messages(self, payload: str) -> list[Outbound]:
        return [dumps({"event": "media", "media": {"payload": payload}})]

    def _mark_messages(self, name: str) -> list[Outbound]:
        return [dumps({"event": "mark", "mark": {"name": name}})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"event": "clear"})]
