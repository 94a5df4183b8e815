"""Plivo audio streaming, as Plivo speaks it.

https://plivo.com/docs/voice/audio-streaming/audio-streaming: ``start`` first (no
``connected``), numeric ``sequenceNumber``; the application sends ``playAudio``,
``checkpoint`` (answered by ``playedStream``) and ``clearAudio`` (answered by
``clearedAudio``; checkpoints dropped by a clear are not answered).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voxwire.g711 import decode_ulaw, encode_ulaw
from voxwire.protocols.plivo import PlivoCodec
from voxwire.sim.providers.base import ProviderSide, b64, dumps, field, l16
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio, PlayMark

__all__ = ["PlivoSide"]


class PlivoSide(ProviderSide):
    """Plivo's side of an audio stream: mu-law at 8 kHz, L16 at 16 kHz.

    ``parameters`` go out as the start message's ``extra_headers`` (``k=v;k=v``).
    """

    codec = PlivoCodec

    @property
    def content_type(self) -> str:
        """The stream's audio content type."""
        return "audio/x-mulaw" if self.rate == 8000 else "audio/x-l16"

    @property
    def stream_id(self) -> str:
        """The stream's ``streamId``."""
        return self.call_id

    def _extra_headers(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.parameters.items())

    def opening(self) -> list[Message]:
        start = {
            "event": "start",
            "sequenceNumber": self._next(),
            "start": {
                "callId": self.call_id,
                "streamId": self.stream_id,
                "accountId": "MA" + "0" * 18,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": self.content_type, "sampleRate": self.rate},
            },
            "extra_headers": self._extra_headers(),
        }
        return [dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        raw = bytes(encode_ulaw(pcm)) if self.rate == 8000 else pcm.astype("<i2").tobytes()
        return dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "streamId": self.stream_id,
                "media": {
                    "track": "inbound",
                    "timestamp": str(self.chunk * 20),
                    "chunk": self.chunk,
                    "payload": b64(raw),
                },
                "extra_headers": self._extra_headers(),
            }
        )

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message:
        return dumps(
            {
                "event": "dtmf",
                "sequenceNumber": self._next(),
                "streamId": self.stream_id,
                "dtmf": {"digit": digit},
                "extra_headers": self._extra_headers(),
            }
        )

    def closing(self) -> list[Message]:
        return [
            dumps({"event": "stop", "sequenceNumber": self._next(), "streamId": self.stream_id})
        ]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = self._object(message)
        event = field(msg, "event")
        if event == "playAudio":
            media = field(msg, "media")
            self._keys(msg, {"event", "media"}, "playAudio")
            self._keys(media, {"contentType", "sampleRate", "payload"}, "playAudio.media")
            self._same(field(media, "contentType"), self.content_type, "playAudio.contentType")
            rate = field(media, "sampleRate")
            self._require(
                isinstance(rate, int) and not isinstance(rate, bool),
                f"playAudio.media.sampleRate must be a number, got {rate!r}",
            )
        if event == "playAudio" and (raw := self._payload(msg, "media", "payload")):
            if field(msg, "media", "sampleRate") != self.rate:
                return self._refuse(f"playAudio sampleRate is not the number {self.rate}")
            if self.rate == 8000:
                return [PlayAudio(decode_ulaw(np.frombuffer(raw, np.uint8)))]
            pcm = l16(raw)
            return [PlayAudio(pcm)] if pcm is not None else self._refuse("odd L16 payload")
        if event == "checkpoint" and (name := self._name(msg, "name")) is not None:
            self._keys(msg, {"event", "streamId", "name"}, "checkpoint")
            self._same(field(msg, "streamId"), self.stream_id, "checkpoint.streamId")
            return [PlayMark(name)]
        if event == "clearAudio":
            self._keys(msg, {"event", "streamId"}, "clearAudio")
            self._same(field(msg, "streamId"), self.stream_id, "clearAudio.streamId")
            return [ClearAudio()]
        return self._refuse(f"Plivo does not accept {message!r:.80}")

    def mark_played(self, name: str) -> list[Message]:
        msg = {"event": "playedStream", "sequenceNumber": self._next(), "name": name}
        return [dumps({**msg, "streamId": self.stream_id})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        msg = {"event": "clearedAudio", "sequenceNumber": self._next()}
        return [dumps({**msg, "streamId": self.stream_id})]
