"""FreJun Teler media streaming, as Teler speaks it.

https://frejun.ai/docs/media-streaming/supported-messages: ``start`` then ``audio`` with
base64 L16; no marks and no stop message (the socket closes). The application sends
``audio`` (each with a unique integer ``chunk_id``), ``interrupt`` (naming a chunk) and
``clear``; neither of the last two is answered.
"""

from __future__ import annotations

import uuid

from voxwire.protocols.teler import TelerCodec
from voxwire.sim.providers.base import ProviderSide, b64, dumps, field, l16
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio

__all__ = ["TelerSide"]


def _is_int(value: object) -> bool:
    """Whether ``value`` is a JSON integer (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


class TelerSide(ProviderSide):
    """Teler's side of a media stream: L16 at 8 or 16 kHz.

    ``chunk_ids`` lists the ``chunk_id`` of each audio message received, in order.
    """

    codec = TelerCodec

    def _begin(self) -> None:
        super()._begin()
        self.chunk_ids: list[int] = []

    def opening(self) -> list[Message]:
        start = {
            "type": "start",
            "account_id": str(uuid.UUID(int=1)),
            "call_app_id": str(uuid.UUID(int=2)),
            "call_id": self.call_id,
            "stream_id": self.call_id,
            "message_id": self._next(),
            "data": {"encoding": "audio/l16", "sample_rate": self.rate, "channels": 1},
        }
        return [dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        return dumps(
            {
                "type": "audio",
                "stream_id": self.call_id,
                "message_id": self._next(),
                "data": {"audio_b64": b64(pcm.astype("<i2").tobytes())},
            }
        )

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = self._object(message)
        kind = field(msg, "type")
        if kind == "audio":
            self._keys(msg, {"type", "data"}, "audio")
            self._keys(field(msg, "data"), {"audio_b64", "chunk_id"}, "audio.data")
            chunk_id = field(msg, "data", "chunk_id")
            self._require(
                _is_int(chunk_id) and chunk_id not in self.chunk_ids,
                f"chunk_id must be a unique integer, got {chunk_id!r}",
            )
            if isinstance(chunk_id, int):
                self.chunk_ids.append(chunk_id)
        if kind == "audio" and (raw := self._payload(msg, "data", "audio_b64")):
            pcm = l16(raw)
            return [PlayAudio(pcm)] if pcm is not None else self._refuse("odd L16 payload")
        if kind == "clear":
            self._keys(msg, {"type"}, "clear")
            return [ClearAudio()]
        if kind == "interrupt":
            self._keys(msg, {"type", "chunk_id"}, "interrupt")
            chunk_id = field(msg, "chunk_id")
            self._require(
                _is_int(chunk_id) and chunk_id in self.chunk_ids,
                f"interrupt must name a chunk_id sent earlier, got {chunk_id!r}",
            )
            return []
        return self._refuse(f"Teler does not accept {message!r:.80}")
