"""FreJun Teler media streaming: ``start``/``audio`` in, ``audio``/``interrupt``/``clear`` out.

Follows https://frejun.ai/docs/media-streaming/supported-messages and
https://frejun.ai/docs/media-streaming/overview.

JSON text frames with a ``type`` field.

From Teler: ``start`` first (``account_id``, ``call_app_id``, ``call_id``, ``stream_id``,
``message_id`` 1, ``data`` with ``encoding`` ``"audio/l16"``, ``sample_rate`` and
``channels``), then ``audio`` (``stream_id``, ``message_id``, ``data.audio_b64``). The
documentation lists no stop, mark or DTMF message: the stream ends when Teler closes the
socket, and played positions are tracked locally (``supports_marks`` is false).

To Teler: ``{"type": "audio", "data": {"audio_b64": ..., "chunk_id": N}}`` with a unique
integer ``chunk_id`` per chunk (the codec numbers them from 1), ``{"type": "interrupt",
"chunk_id": N}`` to cancel one queued chunk (:meth:`TelerCodec.send_interrupt`) and
``{"type": "clear"}`` to drop every queued chunk.

L16 is taken as little-endian 16-bit PCM; the page does not state the byte order.
"""

from __future__ import annotations

from typing import ClassVar

from voxwire.errors import LocalProtocolError, RemoteProtocolError
from voxwire.protocols.base import Base64MediaCodec, Outbound, ResamplerFactory
from voxwire.protocols.events import CallStarted, Event, MediaFormat, Stopped
from voxwire.protocols.parsing import Skip, dumps, get_int, get_obj, get_str, parse_json_object

__all__ = ["TelerCodec"]


class TelerCodec(Base64MediaCodec):
    """Sans-I/O codec for one Teler media stream; see the module docstring."""

    name: ClassVar[str] = "teler"
    supports_marks: ClassVar[bool] = False
    default_rate: ClassVar[int] = 8000
    rates: ClassVar[tuple[int, ...]] = (8000, 16000)

    def __init__(
        self,
        *,
        pipeline_rate: int | None = None,
        resampler: ResamplerFactory | None = None,
        max_skipped: int = 1000,
    ) -> None:
        super().__init__(pipeline_rate=pipeline_rate, resampler=resampler, max_skipped=max_skipped)
        #: the ``chunk_id`` of the last audio chunk sent
        self.last_chunk_id = 0

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        msg = parse_json_object(data)
        kind = get_str(msg, "type")
        if kind == "audio":
            if self.started is None:
                raise Skip("media_before_start", "audio before the start message")
            body = get_obj(msg, "data")
            return [
                self._payload_audio(get_str(body, "audio_b64"), sequence=get_int(msg, "message_id"))
            ]
        if kind == "start":
            body = get_obj(msg, "data")
            encoding = get_str(body, "encoding")
            if encoding != "audio/l16":
                raise RemoteProtocolError(f"expected encoding audio/l16, got {encoding!r:.40}")
            rate = get_int(body, "sample_rate", required=True)
            assert rate is not None
            stream_id = get_str(msg, "stream_id", "")
            if not stream_id:
                raise Skip("malformed", "start without a stream_id")
            meta = {k: v for k, v in msg.items() if k not in ("type", "data")}
            started = CallStarted(
                stream_id=stream_id,
                call_id=get_str(msg, "call_id", ""),
                media_format=MediaFormat("l16", rate, get_int(body, "channels") or 1),
                metadata=meta,
            )
            return self._start(started)
        if kind == "stop":
            if self.started is None:
                raise Skip("media_before_start", "stop before the start message")
            self.stopped = True
            return [Stopped()]
        raise Skip("unknown_event", f"unknown message type {kind!r:.40}")

    def _payload_messages(self, payload: str) -> list[Outbound]:
        self.last_chunk_id += 1
        body = {
            "audio_b64": payload,
            "chunk_id": self.last_chunk_id,
        }
        return [dumps({"type": "audio", "data": body})]

    def send_interrupt(self, chunk_id: int) -> list[Outbound]:
        """Cancel the playback of one chunk sent earlier."""
        self._require_started("interrupt")
        if not 1 <= chunk_id <= self.last_chunk_id:
            raise LocalProtocolError(
                f"chunk_id must name a sent chunk (1..{self.last_chunk_id}), got {chunk_id}"
            )
        self.stats.messages_out += 1
        return [dumps({"type": "interrupt", "chunk_id": chunk_id})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"type": "clear"})]
