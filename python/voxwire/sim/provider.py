"""The provider's half of each media-stream protocol, for the simulated phone side.

A :class:`ProviderSide` speaks a protocol the way the telephony provider does: it builds
the opening messages (connected, start, ...), one message per 20 ms of caller audio and
the closing message, and it reads what the application sends back (audio, marks, clear)
into :class:`PlayAudio`, :class:`PlayMark` and :class:`ClearAudio`. It answers a played
mark and a clear as the provider's documentation says. Each class names the page it
follows; the same pages are cited, field by field, by the codecs in
:mod:`voxwire.protocols`. Nothing here imports those codecs: the simulated caller tests
them from the other side of the wire.
"""

from __future__ import annotations

import base64
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from voxwire.g711 import decode_ulaw, encode_ulaw

__all__ = [
    "PROVIDERS",
    "ClearAudio",
    "PhoneEvent",
    "PlayAudio",
    "PlayMark",
    "ProviderSide",
    "Unexpected",
]

PCM = npt.NDArray[np.int16]
Message = str | bytes


@dataclass(frozen=True, slots=True, eq=False)
class PlayAudio:
    """The application sent audio to play to the caller (line-rate PCM)."""

    pcm: PCM


@dataclass(frozen=True, slots=True)
class PlayMark:
    """The application asked to be told when the audio sent so far has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearAudio:
    """The application asked to drop the audio queued for the caller (barge-in)."""


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A message the provider would not accept (kept for the report, never raised)."""

    reason: str


PhoneEvent = PlayAudio | PlayMark | ClearAudio | Unexpected


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(message: Message) -> dict[str, object] | None:
    if isinstance(message, bytes):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _field(obj: object, *path: str) -> object:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _payload(obj: object, *path: str) -> bytes | None:
    value = _field(obj, *path)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def _l16(raw: bytes, big_endian: bool = False) -> PCM | None:
    if len(raw) % 2:
        return None
    return np.frombuffer(raw, dtype=">i2" if big_endian else "<i2").astype(np.int16)


class ProviderSide(ABC):
    """One call's provider side; subclasses implement a protocol's wire format.

    ``rate`` is the line rate. ``frame_ms`` is the duration of one caller audio message.
    """

    name: ClassVar[str]
    #: default line rate of the protocol's usual set-up
    default_rate: ClassVar[int] = 8000
    #: line rates the simulation supports for this protocol
    rates: ClassVar[tuple[int, ...]] = (8000,)
    #: WebSocket subprotocols to offer when connecting
    subprotocols: ClassVar[tuple[str, ...]] = ()
    #: whether the protocol runs over a plain TCP byte stream instead of a WebSocket
    raw_tcp: ClassVar[bool] = False

    def __init__(self, rate: int | None = None, *, call_id: str | None = None) -> None:
        self.rate = rate or self.default_rate
        if self.rate not in self.rates:
            raise ValueError(
                f"{self.name} lines run at {', '.join(map(str, self.rates))} Hz, got {self.rate}"
            )
        self.frame = self.rate // 50
        self.call_id = call_id or str(uuid.uuid4())
        self.sequence = 0
        self.chunk = 0

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    @abstractmethod
    def opening(self) -> list[Message]:
        """What the provider sends when the call is answered (connected, start, ...)."""

    @abstractmethod
    def audio(self, pcm: PCM) -> Message:
        """One message carrying 20 ms of caller audio (``self.frame`` samples)."""

    def closing(self) -> list[Message]:
        """What the provider sends when the caller hangs up (empty: it closes the socket)."""
        return []

    @abstractmethod
    def parse(self, message: Message) -> list[PhoneEvent]:
        """What one message from the application asks for."""

    def mark_played(self, name: str) -> list[Message]:
        """The provider's answer once the audio before mark ``name`` has played."""
        return []

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        """The provider's answer to a clear that dropped the marks ``pending``."""
        return []


class TwilioSide(ProviderSide):
    """Twilio Media Streams: https://www.twilio.com/docs/voice/media-streams/websocket-messages.

    ``connected`` then ``start``; ``media`` with string counters and base64 mu-law; a
    ``mark`` comes back when its audio played, and a ``clear`` sends back every pending
    mark.
    """

    name = "twilio"

    def __init__(self, rate: int | None = None, *, call_id: str | None = None) -> None:
        super().__init__(rate, call_id=call_id)
        self.sid = "MZ" + uuid.UUID(self.call_id).hex if _is_uuid(self.call_id) else self.call_id

    def opening(self) -> list[Message]:
        start = {
            "event": "start",
            "sequenceNumber": str(self._next()),
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": self.sid,
                "callSid": "CA" + self.sid[2:],
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": self.sid,
        }
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        return [_dumps(connected), _dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self.chunk),
            "timestamp": str((self.chunk - 1) * 20),
            "payload": _b64(bytes(encode_ulaw(pcm))),
        }
        return _dumps(
            {
                "event": "media",
                "sequenceNumber": str(self._next()),
                "media": media,
                "streamSid": self.sid,
            }
        )

    def closing(self) -> list[Message]:
        stop = {"accountSid": "AC" + "0" * 32, "callSid": "CA" + self.sid[2:]}
        msg = {"event": "stop", "sequenceNumber": str(self._next()), "stop": stop}
        return [_dumps({**msg, "streamSid": self.sid})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = _json(message)
        event = _field(msg, "event")
        if msg is None or msg.get("streamSid") != self.sid:
            return [Unexpected(f"not a message for stream {self.sid}: {message!r:.80}")]
        if event == "media":
            raw = _payload(msg, "media", "payload")
            return [PlayAudio(decode_ulaw(np.frombuffer(raw, np.uint8)))] if raw else []
        if event == "mark" and isinstance(name := _field(msg, "mark", "name"), str):
            return [PlayMark(name)]
        if event == "clear":
            return [ClearAudio()]
        return [Unexpected(f"Twilio does not accept {message!r:.80}")]

    def mark_played(self, name: str) -> list[Message]:
        mark = {"event": "mark", "sequenceNumber": str(self._next()), "mark": {"name": name}}
        return [_dumps({**mark, "streamSid": self.sid})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [m for name in pending for m in self.mark_played(name)]


class TelnyxSide(ProviderSide):
    """Telnyx: https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming.

    snake_case keys; PCMU at 8 kHz or L16 (network byte order) at 16 kHz; a ``clear``
    returns the queued marks.
    """

    name = "telnyx"
    rates = (8000, 16000)

    def opening(self) -> list[Message]:
        encoding = "PCMU" if self.rate == 8000 else "L16"
        start = {
            "event": "start",
            "sequence_number": str(self._next()),
            "start": {
                "user_id": str(uuid.UUID(int=7)),
                "call_control_id": "v3:" + self.call_id,
                "call_session_id": self.call_id,
                "from": "+13125550100",
                "to": "+13125550199",
                "custom_parameters": {},
                "media_format": {"encoding": encoding, "sample_rate": self.rate, "channels": 1},
            },
            "stream_id": self.call_id,
        }
        return [_dumps({"event": "connected", "version": "1.0.0"}), _dumps(start)]

    def _encode(self, pcm: PCM) -> bytes:
        return bytes(encode_ulaw(pcm)) if self.rate == 8000 else pcm.astype(">i2").tobytes()

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self.chunk),
            "timestamp": str((self.chunk - 1) * 20),
            "payload": _b64(self._encode(pcm)),
        }
        return _dumps(
            {
                "event": "media",
                "sequence_number": str(self._next()),
                "media": media,
                "stream_id": self.call_id,
            }
        )

    def closing(self) -> list[Message]:
        stop = {"user_id": str(uuid.UUID(int=7)), "call_control_id": "v3:" + self.call_id}
        msg = {"event": "stop", "sequence_number": str(self._next()), "stop": stop}
        return [_dumps({**msg, "stream_id": self.call_id})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = _json(message)
        event = _field(msg, "event")
        if event == "media" and (raw := _payload(msg, "media", "payload")):
            if self.rate == 8000:
                return [PlayAudio(decode_ulaw(np.frombuffer(raw, np.uint8)))]
            pcm = _l16(raw, big_endian=True)
            return [PlayAudio(pcm)] if pcm is not None else [Unexpected("odd L16 payload")]
        if event == "mark" and isinstance(name := _field(msg, "mark", "name"), str):
            return [PlayMark(name)]
        if event == "clear":
            return [ClearAudio()]
        return [Unexpected(f"Telnyx does not accept {message!r:.80}")]

    def mark_played(self, name: str) -> list[Message]:
        msg = {"event": "mark", "sequence_number": str(self._next()), "mark": {"name": name}}
        return [_dumps({**msg, "stream_id": self.call_id})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [m for name in pending for m in self.mark_played(name)]


class PlivoSide(ProviderSide):
    """Plivo: https://plivo.com/docs/voice/audio-streaming/audio-streaming.

    ``start`` first (no ``connected``), numeric ``sequenceNumber``; ``playAudio``,
    ``checkpoint`` -> ``playedStream``, ``clearAudio`` -> ``clearedAudio`` (checkpoints
    dropped by a clear are not answered).
    """

    name = "plivo"
    rates = (8000, 16000)

    @property
    def _content_type(self) -> str:
        return "audio/x-mulaw" if self.rate == 8000 else "audio/x-l16"

    def opening(self) -> list[Message]:
        start = {
            "event": "start",
            "sequenceNumber": self._next(),
            "start": {
                "callId": self.call_id,
                "streamId": self.call_id,
                "accountId": "MA" + "0" * 18,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": self._content_type, "sampleRate": self.rate},
            },
            "extra_headers": "",
        }
        return [_dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        raw = bytes(encode_ulaw(pcm)) if self.rate == 8000 else pcm.astype("<i2").tobytes()
        return _dumps(
            {
                "event": "media",
                "sequenceNumber": self._next(),
                "streamId": self.call_id,
                "media": {
                    "track": "inbound",
                    "timestamp": str(self.chunk * 20),
                    "chunk": self.chunk,
                    "payload": _b64(raw),
                },
                "extra_headers": "",
            }
        )

    def closing(self) -> list[Message]:
        return [_dumps({"event": "stop", "sequenceNumber": self._next(), "streamId": self.call_id})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = _json(message)
        event = _field(msg, "event")
        if event == "playAudio" and (raw := _payload(msg, "media", "payload")):
            if _field(msg, "media", "sampleRate") != self.rate:
                return [Unexpected(f"playAudio sampleRate is not the number {self.rate}")]
            if self.rate == 8000:
                return [PlayAudio(decode_ulaw(np.frombuffer(raw, np.uint8)))]
            pcm = _l16(raw)
            return [PlayAudio(pcm)] if pcm is not None else [Unexpected("odd L16 payload")]
        if event == "checkpoint" and isinstance(name := _field(msg, "name"), str):
            return [PlayMark(name)]
        if event == "clearAudio":
            return [ClearAudio()]
        return [Unexpected(f"Plivo does not accept {message!r:.80}")]

    def mark_played(self, name: str) -> list[Message]:
        msg = {"event": "playedStream", "sequenceNumber": self._next(), "name": name}
        return [_dumps({**msg, "streamId": self.call_id})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        msg = {"event": "clearedAudio", "sequenceNumber": self._next()}
        return [_dumps({**msg, "streamId": self.call_id})]


class VonageSide(ProviderSide):
    """Vonage: https://developer.vonage.com/en/voice/voice-api/concepts/websockets.

    ``websocket:connected`` with the content type, then binary L16 frames of exactly
    20 ms; ``notify`` -> ``websocket:notify``, ``clear`` -> ``websocket:cleared``.
    """

    name = "vonage"
    default_rate = 16000
    rates = (8000, 16000, 24000)

    def opening(self) -> list[Message]:
        connected = {
            "event": "websocket:connected",
            "content-type": f"audio/l16;rate={self.rate}",
            "uuid": self.call_id,
        }
        return [_dumps(connected)]

    def audio(self, pcm: PCM) -> Message:
        return pcm.astype("<i2").tobytes()

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, bytes):
            if len(message) != self.frame * 2:
                return [Unexpected(f"a {len(message)}-byte frame; 20 ms is {self.frame * 2}")]
            pcm = _l16(message)
            return [PlayAudio(pcm)] if pcm is not None else []
        msg = _json(message)
        action = _field(msg, "action")
        if action == "notify" and isinstance(name := _field(msg, "payload", "name"), str):
            return [PlayMark(name)]
        if action == "clear":
            return [ClearAudio()]
        return [Unexpected(f"Vonage does not accept {message!r:.80}")]

    def mark_played(self, name: str) -> list[Message]:
        return [_dumps({"event": "websocket:notify", "payload": {"name": name}})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [_dumps({"event": "websocket:cleared"})]


class ExotelSide(ProviderSide):
    """Exotel Voicebot: https://developer.exotel.com/docs/agentstream/websocket-protocol.

    ``connected``, ``start`` (string counters, ``audio/x-raw``), ``media`` with base64 L16;
    marks echoed when played; ``clear`` is not answered.
    """

    name = "exotel"
    rates = (8000, 16000, 24000)

    def opening(self) -> list[Message]:
        start = {
            "event": "start",
            "sequence_number": str(self._next()),
            "stream_sid": self.call_id,
            "start": {
                "stream_sid": self.call_id,
                "call_sid": self.call_id,
                "account_sid": "voxwire",
                "from": "+919800000000",
                "to": "+918000000000",
                "custom_parameters": {},
                "media_format": {
                    "encoding": "audio/x-raw",
                    "sample_rate": str(self.rate),
                    "bit_rate": "16",
                },
            },
        }
        return [_dumps({"event": "connected"}), _dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        self.chunk += 1
        media = {
            "chunk": str(self.chunk),
            "timestamp": str(self.chunk * 20),
            "payload": _b64(pcm.astype("<i2").tobytes()),
        }
        return _dumps(
            {
                "event": "media",
                "sequence_number": str(self._next()),
                "stream_sid": self.call_id,
                "media": media,
            }
        )

    def closing(self) -> list[Message]:
        stop = {"call_sid": self.call_id, "account_sid": "voxwire", "reason": "callended"}
        msg = {"event": "stop", "sequence_number": str(self._next()), "stop": stop}
        return [_dumps({**msg, "stream_sid": self.call_id})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = _json(message)
        event = _field(msg, "event")
        if msg is None or msg.get("stream_sid") != self.call_id:
            return [Unexpected(f"not a message for stream {self.call_id}: {message!r:.80}")]
        if event == "media" and (raw := _payload(msg, "media", "payload")):
            pcm = _l16(raw)
            return [PlayAudio(pcm)] if pcm is not None else [Unexpected("odd L16 payload")]
        if event == "mark" and isinstance(name := _field(msg, "mark", "name"), str):
            return [PlayMark(name)]
        if event == "clear":
            return [ClearAudio()]
        return [Unexpected(f"Exotel does not accept {message!r:.80}")]

    def mark_played(self, name: str) -> list[Message]:
        msg = {"event": "mark", "sequence_number": str(self._next()), "mark": {"name": name}}
        return [_dumps({**msg, "stream_sid": self.call_id})]


class TelerSide(ProviderSide):
    """FreJun Teler: https://frejun.ai/docs/media-streaming/supported-messages.

    ``start`` then ``audio`` with base64 L16; no marks and no stop message (the socket
    closes); ``clear`` and ``interrupt`` are not answered.
    """

    name = "teler"
    rates = (8000, 16000)

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
        return [_dumps(start)]

    def audio(self, pcm: PCM) -> Message:
        return _dumps(
            {
                "type": "audio",
                "stream_id": self.call_id,
                "message_id": self._next(),
                "data": {"audio_b64": _b64(pcm.astype("<i2").tobytes())},
            }
        )

    def parse(self, message: Message) -> list[PhoneEvent]:
        msg = _json(message)
        kind = _field(msg, "type")
        if kind == "audio" and (raw := _payload(msg, "data", "audio_b64")):
            pcm = _l16(raw)
            return [PlayAudio(pcm)] if pcm is not None else [Unexpected("odd L16 payload")]
        if kind == "clear":
            return [ClearAudio()]
        if kind == "interrupt":
            return []
        return [Unexpected(f"Teler does not accept {message!r:.80}")]


class JambonzSide(ProviderSide):
    """jambonz ``listen``: https://docs.jambonz.org/verbs/verbs/listen.

    A JSON metadata frame, then binary L16; ``mark`` echoed with ``event: playout``;
    ``killAudio`` drops the queue and returns its marks with ``event: cleared``.
    """

    name = "jambonz"
    default_rate = 16000
    rates = (8000, 16000, 24000, 48000)
    subprotocols = ("audio.jambonz.org",)

    def opening(self) -> list[Message]:
        meta = {
            "callSid": self.call_id,
            "from": "+15085550100",
            "to": "+15085550199",
            "direction": "inbound",
            "sampleRate": self.rate,
            "mixType": "mono",
        }
        return [_dumps(meta)]

    def audio(self, pcm: PCM) -> Message:
        return pcm.astype("<i2").tobytes()

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, bytes):
            pcm = _l16(message)
            return [PlayAudio(pcm)] if pcm is not None else [Unexpected("odd L16 frame")]
        msg = _json(message)
        kind = _field(msg, "type")
        if kind == "mark" and isinstance(name := _field(msg, "data", "name"), str):
            return [PlayMark(name)]
        if kind == "killAudio":
            return [ClearAudio()]
        if kind == "clearMarks":
            return []
        return [Unexpected(f"jambonz does not accept {message!r:.80}")]

    def mark_played(self, name: str) -> list[Message]:
        return [_dumps({"type": "mark", "data": {"name": name, "event": "playout"}})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [_dumps({"type": "mark", "data": {"name": n, "event": "cleared"}}) for n in pending]


class RawPcmSide(ProviderSide):
    """voxwire's raw-PCM WebSocket (:mod:`voxwire.protocols.rawpcm`), as a browser speaks it."""

    name = "rawpcm"
    default_rate = 16000
    rates = (8000, 16000, 24000, 48000)

    def opening(self) -> list[Message]:
        return [_dumps({"event": "start", "sampleRate": self.rate, "parameters": {}})]

    def audio(self, pcm: PCM) -> Message:
        return pcm.astype("<i2").tobytes()

    def closing(self) -> list[Message]:
        return [_dumps({"event": "stop", "reason": "hung up"})]

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, bytes):
            pcm = _l16(message)
            return [PlayAudio(pcm)] if pcm is not None else [Unexpected("odd L16 frame")]
        msg = _json(message)
        event = _field(msg, "event")
        if event == "mark" and isinstance(name := _field(msg, "name"), str):
            return [PlayMark(name)]
        if event == "clear":
            return [ClearAudio()]
        return [Unexpected(f"unexpected message {message!r:.80}")]

    def mark_played(self, name: str) -> list[Message]:
        return [_dumps({"event": "mark", "name": name})]

    def cleared(self, pending: Sequence[str]) -> list[Message]:
        return [*(m for n in pending for m in self.mark_played(n)), _dumps({"event": "cleared"})]


_AUDIOSOCKET_KINDS = {8000: 0x10, 16000: 0x12, 24000: 0x13, 48000: 0x16}


class AudioSocketSide(ProviderSide):
    """Asterisk AudioSocket: https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket.

    Type-length-value messages over TCP: the call's UUID, then slin audio frames, then a
    hangup. There are no marks and no clear on the wire. :meth:`parse` takes any chunk
    of the byte stream.
    """

    name = "audiosocket"
    rates = (8000, 16000, 24000, 48000)
    raw_tcp = True

    def __init__(self, rate: int | None = None, *, call_id: str | None = None) -> None:
        super().__init__(rate, call_id=call_id)
        self._pending = bytearray()

    @staticmethod
    def _tlv(kind: int, payload: bytes = b"") -> bytes:
        return bytes([kind]) + len(payload).to_bytes(2, "big") + payload

    def opening(self) -> list[Message]:
        ident = uuid.UUID(self.call_id) if _is_uuid(self.call_id) else uuid.uuid4()
        return [self._tlv(0x01, ident.bytes)]

    def audio(self, pcm: PCM) -> Message:
        return self._tlv(_AUDIOSOCKET_KINDS[self.rate], pcm.astype("<i2").tobytes())

    def closing(self) -> list[Message]:
        return [self._tlv(0x00)]

    def parse(self, message: Message) -> list[PhoneEvent]:
        if isinstance(message, str):
            return [Unexpected("AudioSocket is a byte stream")]
        self._pending += message
        out: list[PhoneEvent] = []
        while len(self._pending) >= 3:
            kind = self._pending[0]
            length = int.from_bytes(self._pending[1:3], "big")
            if len(self._pending) < 3 + length:
                break
            payload = bytes(self._pending[3 : 3 + length])
            del self._pending[: 3 + length]
            if kind == 0x00:
                continue  # the server hung up; the socket closes next
            pcm = _l16(payload) if kind == _AUDIOSOCKET_KINDS[self.rate] else None
            out.append(PlayAudio(pcm) if pcm is not None else Unexpected(f"type 0x{kind:02x}"))
        return out


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


PROVIDERS: dict[str, type[ProviderSide]] = {
    cls.name: cls
    for cls in (
        TwilioSide,
        TelnyxSide,
        PlivoSide,
        VonageSide,
        ExotelSide,
        TelerSide,
        JambonzSide,
        RawPcmSide,
        AudioSocketSide,
    )
}
"""Provider sides by protocol name: one for each protocol of ``voxwire.protocols.CODECS``.

The sides state their protocol's facts (``default_rate``, ``rates``, ``subprotocols``,
``raw_tcp``) from the provider's pages, not from the codecs, and the tests check that
they agree with the codec classes: same names, same default rate and subprotocols, rates
the codec knows, TCP exactly where the codec's ``transport`` is ``"tcp"``.
"""
