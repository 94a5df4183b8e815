"""Exotel Voicebot streaming, as Exotel speaks it.

https://developer.exotel.com/docs/agentstream/websocket-protocol: ``connected``,
``start`` (string counters, ``audio/x-raw``), ``media`` with base64 L16; the application
sends ``media`` (in chunks of multiples of 320 bytes), ``mark`` (echoed when played) and
``clear`` (not answered), each with the stream's ``stream_sid``.
"""

from __future__ import annotations

from voxwire.protocols.exotel import ExotelCodec
from voxwire.sim.providers.base import ProviderSide, b64, dumps, l16
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio, PlayMark

__all__ = ["ExotelSide"]

#: "the payload size must be a multiple of 320 bytes" (Exotel's streaming page)
CHUNK_BYTES = 320


class ExotelSide(ProviderSide):
    """Exotel's side of a Voicebot stream: L16 at 8, 16 or 24 kHz."""

    codec = ExotelCodec

    @property
    def sid(self) -> str:
        """The stream's ``stream_sid``."""
        return self.call_id

    def opening(self) -> list[Message]:
        start = {
            "event": "start",
            "sequence_number": str(self._next()),
            "stream_sid": self.sid,
            "start": {
                "stream_sid": self.sid,
                "call_sid": self.call_id,
                "account_sid": "voxwire",
                "from": "+919800000000",
                "to": "+918000000000",
                "custom_parameters": self.parameters,
                "media_format": {
                    "encoding": "audio/x-raw",
                    "sample_rate": str(self.rate),
                    "bit_rate": "16",
                },
            },
        }
        return [dumps({"event": "connected"}), dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        media = {
            "chunk": str(self.chunk),
            "timestamp": str(self.chunk * 20),
            "payload": b64(pcm.astype("<i2").tobytes()),
        }
        return dumps(
            {
                "event": "media",
                "sequence_number": str(self._next()),
                "stream_sid": self.sid,
                "media": media,
            }
        )

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message:
        return dumps(
            {
                "event": "dtmf",
                "sequence_number": str(self._next()),
                "stream_sid": self.sid,
                "dtmf": {"digit": digit, "duration": str(duration_ms)},
            }
        )

    def closing(self) -> list[Message]:
        stop = {"call_sid": self.call_id, "account_sid": "voxwire", "reason": "callended"}
        msg = {"event": "stop", "sequence_number": str(self._next()), "stop": stop}
        return [dumps({**msg, "stream_sid": self.sid})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = self._object(message)
        if msg is None or not self._same(msg.get("stream_sid"), self.sid, "stream_sid"):
            return self._refuse(f"not a message for stream {self.sid}: {message!r:.80}")
        event = msg.get("event")
        if event == "media":
            self._keys(msg, {"event", "stream_sid", "media"}, "media")
            self._keys(msg.get("media"), {"payload"}, "media.media")
        if event == "media" and (raw := self._payload(msg, "media", "payload")):
            self._require(
                len(raw) % CHUNK_BYTES == 0,
                f"chunks are multiples of {CHUNK_BYTES} bytes, got {len(raw)}",
            )
            pcm = l16(raw)
            return [PlayAudio(pcm)] if pcm is not None else self._refuse("odd L16 payload")
        if event == "mark" and (name := self._name(msg, "mark", "name")) is not None:
            self._keys(msg, {"event", "stream_sid", "mark"}, "mark")
            self._keys(msg.get("mark"), {"name"}, "mark.mark")
            return [PlayMark(name)]
        if event == "clear":
            self._keys(msg, {"event", "stream_sid"}, "clear")
            return [ClearAudio()]
        return self._refuse(f"Exotel does not accept {message!r:.80}")

    def mark_played(self, name: str) -> list[Message]:
        msg = {"event": "mark", "sequence_number": str(self._next()), "mark": {"name": name}}
        return [dumps({**msg, "stream_sid": self.sid})]
