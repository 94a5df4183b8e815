"""Vonage Voice API WebSockets, as Vonage speaks it.

https://developer.vonage.com/en/voice/voice-api/concepts/websockets:
``websocket:connected`` with the content type, then binary L16 frames of exactly 20 ms
both ways; the application's ``notify`` is answered by ``websocket:notify`` once played,
its ``clear`` by ``websocket:cleared``.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxwire.protocols.vonage import VonageCodec
from voxwire.sim.providers.base import ProviderSide, dumps, field, l16
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio, PlayMark

__all__ = ["VonageSide"]


class VonageSide(ProviderSide):
    """Vonage's side of a WebSocket call: L16 at 8, 16 or 24 kHz."""

    codec = VonageCodec

    def opening(self) -> list[Message]:
        connected = {
            "event": "websocket:connected",
            "content-type": f"audio/l16;rate={self.rate}",
            "uuid": self.call_id,
            **self.parameters,
        }
        return [dumps(connected)]

    def audio(self, pcm: PCM) -> Message:
        return pcm.astype("<i2").tobytes()

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message:
        return dumps({"event": "websocket:dtmf", "digit": digit, "duration": duration_ms})

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, bytes):
            if len(message) != self.frame * 2:
                return self._refuse(f"a {len(message)}-byte frame; 20 ms is {self.frame * 2}")
            pcm = l16(message)
            return [PlayAudio(pcm)] if pcm is not None else []
        msg = self._object(message)
        action = field(msg, "action")
        if action == "notify" and (name := self._name(msg, "payload", "name")) is not None:
            self._keys(msg, {"action", "payload"}, "notify")
            return [PlayMark(name)]
        if action == "clear":
            self._keys(msg, {"action"}, "clear")
            return [ClearAudio()]
        return self._refuse(f"Vonage does not accept {message!r:.80}")

    def mark_played(self, name: str) -> list[Message]:
        return [dumps({"event": "websocket:notify", "payload": {"name": name}})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [dumps({"event": "websocket:cleared"})]
