"""voxwire's raw-PCM WebSocket (:mod:`voxwire.protocols.rawpcm`), as a browser speaks it.

A ``start`` text frame with the rate, then binary L16 both ways; the application's
``mark`` is echoed once played; ``clear`` returns the pending marks, then ``cleared``.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxwire.protocols.rawpcm import RawPcmCodec
from voxwire.sim.providers.base import ProviderSide, dumps, field, l16
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio, PlayMark

__all__ = ["RawPcmSide"]


class RawPcmSide(ProviderSide):
    """A browser's side of a raw-PCM stream, at any of the protocol's rates."""

    codec = RawPcmCodec

    def opening(self) -> list[Message]:
        return [dumps({"event": "start", "sampleRate": self.rate, "parameters": self.parameters})]

    def audio(self, pcm: PCM) -> Message:
        return pcm.astype("<i2").tobytes()

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message:
        return dumps({"event": "dtmf", "digit": digit})

    def closing(self) -> list[Message]:
        return [dumps({"event": "stop", "reason": "hung up"})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, bytes):
            pcm = l16(message)
            return [PlayAudio(pcm)] if pcm is not None else self._refuse("odd L16 frame")
        msg = self._object(message)
        event = field(msg, "event")
        if event == "mark" and (name := self._name(msg, "name")) is not None:
            self._keys(msg, {"event", "name"}, "mark")
            return [PlayMark(name)]
        if event == "clear":
            self._keys(msg, {"event"}, "clear")
            return [ClearAudio()]
        return self._refuse(f"unexpected message {message!r:.80}")

    def mark_played(self, name: str) -> list[Message]:
        return [dumps({"event": "mark", "name": name})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [*(m for n in pending for m in self.mark_played(n)), dumps({"event": "cleared"})]
