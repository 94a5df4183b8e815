"""Twilio Media Streams, as Twilio speaks it.

https://www.twilio.com/docs/voice/media-streams/websocket-messages: ``connected`` then
``start``; ``media`` with string counters and base64 mu-law; a ``mark`` comes back when
its audio played, and a ``clear`` sends back every pending mark. The application may send
``media``, ``mark`` and ``clear``, each carrying the stream's ``streamSid``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from voxwire.g711 import decode_ulaw, encode_ulaw
from voxwire.protocols.twilio import TwilioCodec
from voxwire.sim.providers.base import ProviderSide, b64, dumps, is_uuid
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio, PlayMark

__all__ = ["TwilioSide"]

_ACCOUNT = "AC" + "0" * 32


class TwilioSide(ProviderSide):
    """Twilio's side of a media stream; ``sid`` is the stream's ``streamSid``."""

    codec = TwilioCodec

    @property
    def sid(self) -> str:
        """The stream's ``streamSid`` (from the call id)."""
        return "MZ" + uuid.UUID(self.call_id).hex if is_uuid(self.call_id) else self.call_id

    @property
    def call_sid(self) -> str:
        """The call's ``callSid``."""
        return "CA" + self.sid[2:]

    def opening(self) -> list[Message]:
        start = {
            "event": "start",
            "sequenceNumber": str(self._next()),
            "start": {
                "accountSid": _ACCOUNT,
                "streamSid": self.sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": self.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": self.sid,
        }
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        return [dumps(connected), dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self.chunk),
            "timestamp": str((self.chunk - 1) * 20),
            "payload": b64(bytes(encode_ulaw(pcm))),
        }
        return dumps(
            {
                "event": "media",
                "sequenceNumber": str(self._next()),
                "media": media,
                "streamSid": self.sid,
            }
        )

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message:
        """The caller pressed ``digit``."""
        return dumps(
            {
                "event": "dtmf",
                "streamSid": self.sid,
                "sequenceNumber": str(self._next()),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def closing(self) -> list[Message]:
        stop = {"accountSid": _ACCOUNT, "callSid": self.call_sid}
        msg = {"event": "stop", "sequenceNumber": str(self._next()), "stop": stop}
        return [dumps({**msg, "streamSid": self.sid})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = self._object(message)
        if msg is None or not self._same(msg.get("streamSid"), self.sid, "streamSid"):
            return self._refuse(f"not a message for stream {self.sid}: {message!r:.80}")
        event = msg.get("event")
        if event == "media":
            self._keys(msg, {"event", "streamSid", "media"}, "media")
            self._keys(msg.get("media"), {"payload"}, "media.media")
            raw = self._payload(msg, "media", "payload")
            return [PlayAudio(decode_ulaw(np.frombuffer(raw, np.uint8)))] if raw else []
        if event == "mark" and (name := self._name(msg, "mark", "name")) is not None:
            self._keys(msg, {"event", "streamSid", "mark"}, "mark")
            self._keys(msg.get("mark"), {"name"}, "mark.mark")
            return [PlayMark(name)]
        if event == "clear":
            self._keys(msg, {"event", "streamSid"}, "clear")
            return [ClearAudio()]
        return self._refuse(f"Twilio does not accept {message!r:.80}")

    def mark_played(self, name: str) -> list[Message]:
        mark = {"event": "mark", "sequenceNumber": str(self._next()), "mark": {"name": name}}
        return [dumps({**mark, "streamSid": self.sid})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [m for name in pending for m in self.mark_played(name)]
