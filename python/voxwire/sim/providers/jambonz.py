"""jambonz ``listen``, as jambonz speaks it.

https://docs.jambonz.org/verbs/verbs/listen: a JSON metadata frame, then binary L16 both
ways; the application's ``mark`` is echoed with ``event: playout`` once played;
``killAudio`` drops the queue and returns its marks with ``event: cleared``;
``clearMarks`` drops the marks only.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxwire.protocols.jambonz import JambonzCodec
from voxwire.sim.providers.base import ProviderSide, dumps, field, l16
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio, PlayMark

__all__ = ["JambonzSide"]


class JambonzSide(ProviderSide):
    """jambonz's side of a ``listen`` stream; ``parameters`` go out as ``metadata``."""

    codec = JambonzCodec

    def opening(self) -> list[Message]:
        meta: dict[str, object] = {
            "callSid": self.call_id,
            "from": "+15085550100",
            "to": "+15085550199",
            "direction": "inbound",
            "sampleRate": self.rate,
            "mixType": "mono",
        }
        if self.parameters:
            meta["metadata"] = self.parameters
        return [dumps(meta)]

    def audio(self, pcm: PCM) -> Message:
        return pcm.astype("<i2").tobytes()

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message:
        return dumps({"event": "dtmf", "dtmf": digit, "duration": duration_ms})

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, bytes):
            pcm = l16(message)
            return [PlayAudio(pcm)] if pcm is not None else self._refuse("odd L16 frame")
        msg = self._object(message)
        kind = field(msg, "type")
        if kind == "mark" and (name := self._name(msg, "data", "name")) is not None:
            self._keys(msg, {"type", "data"}, "mark")
            self._keys(field(msg, "data"), {"name"}, "mark.data")
            return [PlayMark(name)]
        if kind == "killAudio":
            self._keys(msg, {"type"}, "killAudio")
            return [ClearAudio()]
        if kind == "clearMarks":
            self._keys(msg, {"type"}, "clearMarks")
            return []
        return self._refuse(f"jambonz does not accept {message!r:.80}")

    def mark_played(self, name: str) -> list[Message]:
        return [dumps({"type": "mark", "data": {"name": name, "event": "playout"}})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [dumps({"type": "mark", "data": {"name": n, "event": "cleared"}}) for n in pending]
