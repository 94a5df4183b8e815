"""Telnyx media streaming, as Telnyx speaks it.

https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming: snake_case
keys; PCMU or PCMA at 8 kHz, L16 (network byte order) at 16 kHz; the application sends
``media``, ``mark`` and ``clear``, and "a clear frame also returns queued marks".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import numpy as np

from voxwire.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw
from voxwire.protocols.telnyx import TelnyxCodec
from voxwire.sim.providers.base import ProviderSide, b64, dumps, l16
from voxwire.sim.providers.events import PCM, ClearAudio, Message, PhoneEvent, PlayAudio, PlayMark

__all__ = ["TelnyxSide"]

_USER = str(uuid.UUID(int=7))


class TelnyxSide(ProviderSide):
    """Telnyx's side of a media stream.

    ``encoding`` is the ``media_format.encoding`` announced: ``PCMU`` (default at 8 kHz),
    ``PCMA``, or ``L16`` (default at 16 kHz). Another name is announced as given, to
    test how the application refuses it, and cannot carry audio.
    """

    codec = TelnyxCodec

    def __init__(
        self,
        rate: int | None = None,
        *,
        encoding: str | None = None,
        call_id: str | None = None,
        strict: bool = False,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(rate, call_id=call_id, strict=strict, parameters=parameters)
        self.encoding = encoding or ("PCMU" if self.rate == 8000 else "L16")

    def opening(self) -> list[Message]:
        start = {
            "event": "start",
            "sequence_number": str(self._next()),
            "start": {
                "user_id": _USER,
                "call_control_id": "v3:" + self.call_id,
                "call_session_id": self.call_id,
                "from": "+13125550100",
                "to": "+13125550199",
                "custom_parameters": self.parameters,
                "media_format": {
                    "encoding": self.encoding,
                    "sample_rate": self.rate,
                    "channels": 1,
                },
            },
            "stream_id": self.call_id,
        }
        return [dumps({"event": "connected", "version": "1.0.0"}), dumps(start)]

    def _encode(self, pcm: PCM) -> bytes:
        if self.encoding == "PCMU":
            return bytes(encode_ulaw(pcm))
        if self.encoding == "PCMA":
            return bytes(encode_alaw(pcm))
        if self.encoding == "L16":
            return pcm.astype(">i2").tobytes()
        raise ValueError(f"the simulated Telnyx side cannot encode {self.encoding}")

    def _decode(self, raw: bytes) -> PCM | None:
        if self.encoding == "PCMU":
            return decode_ulaw(np.frombuffer(raw, np.uint8))
        if self.encoding == "PCMA":
            return decode_alaw(np.frombuffer(raw, np.uint8))
        return l16(raw, big_endian=True)

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self.chunk),
            "timestamp": str((self.chunk - 1) * 20),
            "payload": b64(self._encode(pcm)),
        }
        return dumps(
            {
                "event": "media",
                "sequence_number": str(self._next()),
                "media": media,
                "stream_id": self.call_id,
            }
        )

    def dtmf(self, digit: str, duration_ms: int = 100) -> Message:
        return dumps(
            {
                "event": "dtmf",
                "sequence_number": str(self._next()),
                "dtmf": {"digit": digit},
                "stream_id": self.call_id,
            }
        )

    def closing(self) -> list[Message]:
        stop = {"user_id": _USER, "call_control_id": "v3:" + self.call_id}
        msg = {"event": "stop", "sequence_number": str(self._next()), "stop": stop}
        return [dumps({**msg, "stream_id": self.call_id})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = self._object(message)
        event = msg.get("event") if msg is not None else None
        if event == "media":
            self._keys(msg, {"event", "media"}, "media")
            self._keys(msg.get("media") if msg else None, {"payload"}, "media.media")
        if event == "media" and (raw := self._payload(msg, "media", "payload")):
            pcm = self._decode(raw)
            return [PlayAudio(pcm)] if pcm is not None else self._refuse("odd L16 payload")
        if event == "mark" and (name := self._name(msg, "mark", "name")) is not None:
            self._keys(msg, {"event", "mark"}, "mark")
            self._keys(msg.get("mark") if msg else None, {"name"}, "mark.mark")
            return [PlayMark(name)]
        if event == "clear":
            self._keys(msg, {"event"}, "clear")
            return [ClearAudio()]
        return self._refuse(f"Telnyx does not accept {message!r:.80}")

    def mark_played(self, name: str) -> list[Message]:
        msg = {"event": "mark", "sequence_number": str(self._next()), "mark": {"name": name}}
        return [dumps({**msg, "stream_id": self.call_id})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [m for name in pending for m in self.mark_played(name)]
