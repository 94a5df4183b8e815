"""Fake provider peers, written from each provider's documentation, for conformance tests.

A peer plays the provider's side of one call on a virtual clock:

* ``opening()`` returns the messages the provider sends first (connected, start, ...);
* ``caller(pcm)`` returns one message carrying 20 ms of caller audio, encoded as the
  provider encodes it, with its counters in the documented types;
* ``deliver(message)`` takes one message from the application and checks it field by
  field (exact key sets, value types, text vs binary frame); audio goes into a playout
  queue, marks after it, ``clear`` flushes it;
* ``advance(now)`` plays the queue out in real time and returns what the provider sends
  back as audio finishes (mark / checkpoint / notify echoes).

Peers never import voxwire's codecs; they use only voxwire's G.711 (tested exhaustively on
its own) and the standard library.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

import voxwire

PCM = npt.NDArray[np.int16]


class ConformanceError(AssertionError):
    """The application sent something the provider's documentation does not allow."""


def _json(message: str | bytes) -> dict[str, Any]:
    if not isinstance(message, str):
        raise ConformanceError(
            f"expected a JSON text frame, got a {len(message)}-byte binary frame"
        )
    value = json.loads(message)
    if not isinstance(value, dict):
        raise ConformanceError(f"expected a JSON object, got {value!r}")
    return value


def _keys(obj: dict[str, Any], expected: set[str], where: str) -> None:
    if set(obj) != expected:
        raise ConformanceError(f"{where}: expected keys {sorted(expected)}, got {sorted(obj)}")


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ConformanceError(f"{where}: expected a base64 string, got {type(value).__name__}")
    return base64.b64decode(value, validate=True)


@dataclass
class _Marker:
    name: str


@dataclass
class Peer:
    """Shared playout machinery; subclasses implement the wire format."""

    rate: int = 8000
    now: float = 0.0
    queue: deque[PCM | _Marker] = field(default_factory=deque)
    played: list[PCM] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    seq: int = 0
    chunk: int = 0
    clock: float = 0.0

    frame: int = 0

    def __post_init__(self) -> None:
        self.frame = self.rate // 50

    # caller side
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def opening(self) -> list[str | bytes]:
        raise NotImplementedError

    def caller(self, pcm: PCM) -> str | bytes:
        raise NotImplementedError

    def stop(self) -> list[str | bytes]:
        return []

    # application side
    def deliver(self, message: str | bytes) -> list[str | bytes]:
        self.received.append(message)
        return self._deliver(message)

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        raise NotImplementedError

    def mark_echo(self, name: str) -> list[str | bytes]:
        raise NotImplementedError

    def enqueue_audio(self, pcm: PCM) -> None:
        if not self.queue:
            self.clock = max(self.clock, self.now)  # an idle peer starts playing on arrival
        self.queue.append(pcm)

    def flush(self) -> list[_Marker]:
        pending = [item for item in self.queue if isinstance(item, _Marker)]
        self.queue.clear()
        self.clock = self.now
        return pending

    def advance(self, now: float) -> list[str | bytes]:
        """Play audio out up to ``now``; return echoes of marks whose audio played."""
        out: list[str | bytes] = []
        self.now = max(self.now, now)
        while self.queue:
            head = self.queue[0]
            if isinstance(head, _Marker):
                self.queue.popleft()
                out += self.mark_echo(head.name)
                continue
            duration = len(head) / self.rate
            if self.clock + duration > self.now + 1e-9:
                break
            self.queue.popleft()
            self.played.append(head)
            self.clock += duration
        return out

    def heard(self) -> PCM:
        return np.concatenate(self.played) if self.played else np.zeros(0, np.int16)


def ulaw_bytes(pcm: PCM) -> bytes:
    return bytes(voxwire.encode_ulaw(pcm.tobytes()))


def ulaw_pcm(raw: bytes) -> PCM:
    return np.frombuffer(voxwire.decode_ulaw(raw), dtype=np.int16)


# --- Twilio Media Streams ---------------------------------------------------------------


@dataclass
class TwilioPeer(Peer):
    sid: str = "MZ18ad3ab5a668481ce02b83e7395059f0"
    call_sid: str = "CA362b4a5ea1be6d9c3d1c4a8cb0b2d6f5"
    custom: dict[str, str] = field(default_factory=lambda: {"agent": "echo"})

    def opening(self) -> list[str | bytes]:
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = {
            "event": "start",
            "sequenceNumber": str(self.next_seq()),
            "start": {
                "accountSid": "AC0123456789abcdef0123456789abcdef",
                "streamSid": self.sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": self.custom,
            },
            "streamSid": self.sid,
        }
        return [json.dumps(connected), json.dumps(start)]

    def caller(self, pcm: PCM) -> str:
        self.chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self.chunk),
            "timestamp": str((self.chunk - 1) * 20),
            "payload": base64.b64encode(ulaw_bytes(pcm)).decode(),
        }
        msg = {
            "event": "media",
            "sequenceNumber": str(self.next_seq()),
            "media": media,
            "streamSid": self.sid,
        }
        return json.dumps(msg)

    def dtmf(self, digit: str) -> str:
        return json.dumps(
            {
                "event": "dtmf",
                "streamSid": self.sid,
                "sequenceNumber": str(self.next_seq()),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def stop(self) -> list[str | bytes]:
        body = {"accountSid": "AC0123456789abcdef0123456789abcdef", "callSid": self.call_sid}
        msg = {
            "event": "stop",
            "sequenceNumber": str(self.next_seq()),
            "streamSid": self.sid,
            "stop": body,
        }
        return [json.dumps(msg)]

    def mark_echo(self, name: str) -> list[str | bytes]:
        msg = {
            "event": "mark",
            "sequenceNumber": str(self.next_seq()),
            "streamSid": self.sid,
            "mark": {"name": name},
        }
        return [json.dumps(msg)]

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        msg = _json(message)
        event = msg.get("event")
        if msg.get("streamSid") != self.sid:
            raise ConformanceError(
                f"streamSid: expected {self.sid!r}, got {msg.get('streamSid')!r}"
            )
        if event == "media":
            _keys(msg, {"event", "streamSid", "media"}, "media")
            _keys(msg["media"], {"payload"}, "media.media")
            self.enqueue_audio(ulaw_pcm(_b64(msg["media"]["payload"], "media.payload")))
            return []
        if event == "mark":
            _keys(msg, {"event", "streamSid", "mark"}, "mark")
            _keys(msg["mark"], {"name"}, "mark.mark")
            if not isinstance(msg["mark"]["name"], str):
                raise ConformanceError("mark.name must be a string")
            self.queue.append(_Marker(msg["mark"]["name"]))
            return []
        if event == "clear":
            _keys(msg, {"event", "streamSid"}, "clear")
            out: list[str | bytes] = []
            for marker in self.flush():  # Twilio returns pending marks when cleared
                out += self.mark_echo(marker.name)
            return out
        raise ConformanceError(f"Twilio accepts media, mark and clear only, got {event!r}")


# --- Telnyx -----------------------------------------------------------------------------


@dataclass
class TelnyxPeer(Peer):
    stream_id: str = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
    encoding: str = "PCMU"

    def opening(self) -> list[str | bytes]:
        start = {
            "event": "start",
            "sequence_number": str(self.next_seq()),
            "start": {
                "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
                "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
                "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
                "from": "+13122010094",
                "to": "+13122123456",
                "custom_parameters": {"customer_id": "customer_123"},
                "media_format": {
                    "encoding": self.encoding,
                    "sample_rate": self.rate,
                    "channels": 1,
                },
            },
            "stream_id": self.stream_id,
        }
        return [json.dumps({"event": "connected", "version": "1.0.0"}), json.dumps(start)]

    def encode(self, pcm: PCM) -> bytes:
        if self.encoding == "PCMU":
            return ulaw_bytes(pcm)
        if self.encoding == "PCMA":
            return bytes(voxwire.encode_alaw(pcm.tobytes()))
        return pcm.astype(">i2").tobytes()

    def decode(self, raw: bytes) -> PCM:
        if self.encoding == "PCMU":
            return ulaw_pcm(raw)
        if self.encoding == "PCMA":
            return np.frombuffer(voxwire.decode_alaw(raw), dtype=np.int16)
        return np.frombuffer(raw, dtype=">i2").astype(np.int16)

    def caller(self, pcm: PCM) -> str:
        self.chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self.chunk),
            "timestamp": str((self.chunk - 1) * 20),
            "payload": base64.b64encode(self.encode(pcm)).decode(),
        }
        msg = {
            "event": "media",
            "sequence_number": str(self.next_seq()),
            "media": media,
            "stream_id": self.stream_id,
        }
        return json.dumps(msg)

    def stop(self) -> list[str | bytes]:
        msg = {
            "event": "stop",
            "sequence_number": str(self.next_seq()),
            "stop": {"user_id": "u", "call_control_id": "c"},
            "stream_id": self.stream_id,
        }
        return [json.dumps(msg)]

    def mark_echo(self, name: str) -> list[str | bytes]:
        msg = {
            "event": "mark",
            "sequence_number": str(self.next_seq()),
            "stream_id": self.stream_id,
            "mark": {"name": name},
        }
        return [json.dumps(msg)]

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        msg = _json(message)
        event = msg.get("event")
        if event == "media":
            _keys(msg, {"event", "media"}, "media")
            _keys(msg["media"], {"payload"}, "media.media")
            self.enqueue_audio(self.decode(_b64(msg["media"]["payload"], "media.payload")))
            return []
        if event == "mark":
            _keys(msg, {"event", "mark"}, "mark")
            _keys(msg["mark"], {"name"}, "mark.mark")
            self.queue.append(_Marker(msg["mark"]["name"]))
            return []
        if event == "clear":
            _keys(msg, {"event"}, "clear")
            out: list[str | bytes] = []
            for marker in self.flush():  # "A clear frame also returns queued marks."
                out += self.mark_echo(marker.name)
            return out
        raise ConformanceError(f"Telnyx accepts media, mark and clear, got {event!r}")


# --- Exotel -----------------------------------------------------------------------------


@dataclass
class ExotelPeer(Peer):
    sid: str = "MZ0123456789abcdef0123456789abcdef"

    def opening(self) -> list[str | bytes]:
        start = {
            "event": "start",
            "sequence_number": str(self.next_seq()),
            "stream_sid": self.sid,
            "start": {
                "stream_sid": self.sid,
                "call_sid": "CA0123",
                "account_sid": "AC0123",
                "from": "+919876543210",
                "to": "+918047491899",
                "custom_parameters": {"key1": "value1"},
                "media_format": {
                    "encoding": "audio/x-raw",
                    "sample_rate": str(self.rate),
                    "bit_rate": "16",
                },
            },
        }
        return [json.dumps({"event": "connected"}), json.dumps(start)]

    def caller(self, pcm: PCM) -> str:
        self.chunk += 1
        media = {
            "chunk": str(self.chunk),
            "timestamp": str(self.chunk * 20),
            "payload": base64.b64encode(pcm.astype("<i2").tobytes()).decode(),
        }
        msg = {
            "event": "media",
            "sequence_number": str(self.next_seq()),
            "stream_sid": self.sid,
            "media": media,
        }
        return json.dumps(msg)

    def stop(self) -> list[str | bytes]:
        msg = {
            "event": "stop",
            "sequence_number": str(self.next_seq()),
            "stream_sid": self.sid,
            "stop": {"call_sid": "CA0123", "account_sid": "AC0123", "reason": "callended"},
        }
        return [json.dumps(msg)]

    def mark_echo(self, name: str) -> list[str | bytes]:
        msg = {
            "event": "mark",
            "sequence_number": str(self.next_seq()),
            "stream_sid": self.sid,
            "mark": {"name": name},
        }
        return [json.dumps(msg)]

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        msg = _json(message)
        event = msg.get("event")
        if msg.get("stream_sid") != self.sid:
            raise ConformanceError(
                f"stream_sid: expected {self.sid!r}, got {msg.get('stream_sid')!r}"
            )
        if event == "media":
            _keys(msg, {"event", "stream_sid", "media"}, "media")
            _keys(msg["media"], {"payload"}, "media.media")
            raw = _b64(msg["media"]["payload"], "media.payload")
            if len(raw) % 320:
                raise ConformanceError(f"Exotel chunks are multiples of 320 bytes, got {len(raw)}")
            self.enqueue_audio(np.frombuffer(raw, dtype="<i2").astype(np.int16))
            return []
        if event == "mark":
            _keys(msg, {"event", "stream_sid", "mark"}, "mark")
            _keys(msg["mark"], {"name"}, "mark.mark")
            self.queue.append(_Marker(msg["mark"]["name"]))
            return []
        if event == "clear":
            _keys(msg, {"event", "stream_sid"}, "clear")
            self.flush()
            return []
        raise ConformanceError(f"Exotel accepts media, mark and clear, got {event!r}")


# --- Plivo ------------------------------------------------------------------------------


@dataclass
class PlivoPeer(Peer):
    stream_id: str = "87654321-4321-4321-4321-cba987654321"
    content_type: str = "audio/x-mulaw"

    def opening(self) -> list[str | bytes]:
        start = {
            "event": "start",
            "sequenceNumber": self.next_seq(),
            "start": {
                "callId": "12345678-1234-1234-1234-123456789abc",
                "streamId": self.stream_id,
                "accountId": "MAXXXXXXXXXXXXXXXXXX",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": self.content_type, "sampleRate": self.rate},
            },
            "extra_headers": "userId=12345;sessionId=abc-xyz",
        }
        return [json.dumps(start)]

    def encode(self, pcm: PCM) -> bytes:
        return (
            ulaw_bytes(pcm) if self.content_type == "audio/x-mulaw" else pcm.astype("<i2").tobytes()
        )

    def caller(self, pcm: PCM) -> str:
        self.chunk += 1
        msg = {
            "event": "media",
            "sequenceNumber": self.next_seq(),
            "streamId": self.stream_id,
            "media": {
                "track": "inbound",
                "timestamp": str(1705312200000 + self.chunk * 20),
                "chunk": self.chunk,
                "payload": base64.b64encode(self.encode(pcm)).decode(),
            },
            "extra_headers": "userId=12345;sessionId=abc-xyz",
        }
        return json.dumps(msg)

    def mark_echo(self, name: str) -> list[str | bytes]:
        return [json.dumps({"event": "playedStream", "streamId": self.stream_id, "name": name})]

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        msg = _json(message)
        event = msg.get("event")
        if event == "playAudio":
            _keys(msg, {"event", "media"}, "playAudio")
            media = msg["media"]
            _keys(media, {"contentType", "sampleRate", "payload"}, "playAudio.media")
            if media["contentType"] != self.content_type:
                raise ConformanceError(f"contentType {media['contentType']!r}")
            if not isinstance(media["sampleRate"], int) or media["sampleRate"] != self.rate:
                raise ConformanceError(f"sampleRate must be the number {self.rate}")
            raw = _b64(media["payload"], "playAudio.media.payload")
            if self.content_type == "audio/x-mulaw":
                self.enqueue_audio(ulaw_pcm(raw))
            else:
                self.enqueue_audio(np.frombuffer(raw, dtype="<i2").astype(np.int16))
            return []
        if event == "checkpoint":
            _keys(msg, {"event", "streamId", "name"}, "checkpoint")
            if msg["streamId"] != self.stream_id:
                raise ConformanceError("checkpoint.streamId")
            self.queue.append(_Marker(msg["name"]))
            return []
        if event == "clearAudio":
            _keys(msg, {"event", "streamId"}, "clearAudio")
            if msg["streamId"] != self.stream_id:
                raise ConformanceError("clearAudio.streamId")
            self.flush()  # playedStream is only sent for audio that played
            reply = {
                "event": "clearedAudio",
                "sequenceNumber": self.next_seq(),
                "streamId": self.stream_id,
            }
            return [json.dumps(reply)]
        raise ConformanceError(f"Plivo accepts playAudio, checkpoint and clearAudio, got {event!r}")


# --- Vonage -----------------------------------------------------------------------------


@dataclass
class VonagePeer(Peer):
    rate: int = 16000

    def opening(self) -> list[str | bytes]:
        msg = {
            "event": "websocket:connected",
            "content-type": f"audio/l16;rate={self.rate}",
            "uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "caller": "447700900000",
        }
        return [json.dumps(msg)]

    def caller(self, pcm: PCM) -> bytes:
        return pcm.astype("<i2").tobytes()

    def mark_echo(self, name: str) -> list[str | bytes]:
        return [json.dumps({"event": "websocket:notify", "payload": {"name": name}})]

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        if isinstance(message, bytes):
            if len(message) != self.rate // 50 * 2:
                raise ConformanceError(
                    f"Vonage frames are 20 ms ({self.rate // 25} bytes), got {len(message)}"
                )
            self.enqueue_audio(np.frombuffer(message, dtype="<i2").astype(np.int16))
            return []
        msg = _json(message)
        action = msg.get("action")
        if action == "notify":
            _keys(msg, {"action", "payload"}, "notify")
            self.queue.append(_Marker(msg["payload"]["name"]))
            return []
        if action == "clear":
            _keys(msg, {"action"}, "clear")
            self.flush()
            return [json.dumps({"event": "websocket:cleared"})]
        raise ConformanceError(f"unexpected Vonage message {msg!r}")


# --- Teler ------------------------------------------------------------------------------


@dataclass
class TelerPeer(Peer):
    stream_id: str = "6b6a1f3c-5c4e-4a8e-9f3d-2d9c4c1e7a10"
    chunk_ids: list[int] = field(default_factory=list)

    def opening(self) -> list[str | bytes]:
        msg = {
            "type": "start",
            "account_id": str(uuid.UUID(int=1)),
            "call_app_id": str(uuid.UUID(int=2)),
            "call_id": str(uuid.UUID(int=3)),
            "stream_id": self.stream_id,
            "message_id": self.next_seq(),
            "data": {"encoding": "audio/l16", "sample_rate": self.rate, "channels": 1},
        }
        return [json.dumps(msg)]

    def caller(self, pcm: PCM) -> str:
        body = {"audio_b64": base64.b64encode(pcm.astype("<i2").tobytes()).decode()}
        msg = {
            "type": "audio",
            "stream_id": self.stream_id,
            "message_id": self.next_seq(),
            "data": body,
        }
        return json.dumps(msg)

    def mark_echo(self, name: str) -> list[str | bytes]:
        raise ConformanceError("Teler has no marks")

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        msg = _json(message)
        kind = msg.get("type")
        if kind == "audio":
            _keys(msg, {"type", "data"}, "audio")
            _keys(msg["data"], {"audio_b64", "chunk_id"}, "audio.data")
            chunk_id = msg["data"]["chunk_id"]
            if not isinstance(chunk_id, int) or chunk_id in self.chunk_ids:
                raise ConformanceError(f"chunk_id must be a unique integer, got {chunk_id!r}")
            self.chunk_ids.append(chunk_id)
            raw = _b64(msg["data"]["audio_b64"], "audio.data.audio_b64")
            self.enqueue_audio(np.frombuffer(raw, dtype="<i2").astype(np.int16))
            return []
        if kind == "clear":
            _keys(msg, {"type"}, "clear")
            self.flush()
            return []
        if kind == "interrupt":
            _keys(msg, {"type", "chunk_id"}, "interrupt")
            return []
        raise ConformanceError(f"Teler accepts audio, interrupt and clear, got {kind!r}")


# --- jambonz ----------------------------------------------------------------------------


@dataclass
class JambonzPeer(Peer):
    def opening(self) -> list[str | bytes]:
        meta = {
            "callSid": "b2f4c1de-0000-4000-8000-000000000001",
            "from": "+15083084809",
            "to": "+15083728299",
            "direction": "inbound",
            "sampleRate": self.rate,
            "mixType": "mono",
            "metadata": {"campaign": "spring"},
        }
        return [json.dumps(meta)]

    def caller(self, pcm: PCM) -> bytes:
        return pcm.astype("<i2").tobytes()

    def mark_echo(self, name: str) -> list[str | bytes]:
        return [json.dumps({"type": "mark", "data": {"name": name, "event": "playout"}})]

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        if isinstance(message, bytes):
            if len(message) % 2:
                raise ConformanceError("L16 frames are whole samples")
            self.enqueue_audio(np.frombuffer(message, dtype="<i2").astype(np.int16))
            return []
        msg = _json(message)
        kind = msg.get("type")
        if kind == "mark":
            _keys(msg, {"type", "data"}, "mark")
            _keys(msg["data"], {"name"}, "mark.data")
            self.queue.append(_Marker(msg["data"]["name"]))
            return []
        if kind == "killAudio":
            _keys(msg, {"type"}, "killAudio")
            pending = self.flush()
            return [
                json.dumps({"type": "mark", "data": {"name": m.name, "event": "cleared"}})
                for m in pending
            ]
        if kind == "clearMarks":
            _keys(msg, {"type"}, "clearMarks")
            return []
        raise ConformanceError(f"unexpected jambonz message {msg!r}")


# --- voxwire raw PCM --------------------------------------------------------------------


@dataclass
class RawPcmPeer(Peer):
    rate: int = 16000

    def opening(self) -> list[str | bytes]:
        return [
            json.dumps({"event": "start", "sampleRate": self.rate, "parameters": {"room": "7"}})
        ]

    def caller(self, pcm: PCM) -> bytes:
        return pcm.astype("<i2").tobytes()

    def stop(self) -> list[str | bytes]:
        return [json.dumps({"event": "stop", "reason": "page closed"})]

    def mark_echo(self, name: str) -> list[str | bytes]:
        return [json.dumps({"event": "mark", "name": name})]

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        if isinstance(message, bytes):
            self.enqueue_audio(np.frombuffer(message, dtype="<i2").astype(np.int16))
            return []
        msg = _json(message)
        if msg.get("event") == "mark":
            _keys(msg, {"event", "name"}, "mark")
            self.queue.append(_Marker(msg["name"]))
            return []
        if msg.get("event") == "clear":
            _keys(msg, {"event"}, "clear")
            out: list[str | bytes] = []
            for marker in self.flush():
                out += self.mark_echo(marker.name)
            return [*out, json.dumps({"event": "cleared"})]
        raise ConformanceError(f"unexpected message {msg!r}")


# --- AudioSocket ------------------------------------------------------------------------


def tlv(kind: int, payload: bytes = b"") -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


@dataclass
class AudioSocketPeer(Peer):
    ident: uuid.UUID = field(
        default_factory=lambda: uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
    )
    kinds: ClassVar[dict[int, int]] = {8000: 0x10, 16000: 0x12, 24000: 0x13, 48000: 0x16}
    pending: bytearray = field(default_factory=bytearray)
    hung_up: bool = False

    def opening(self) -> list[str | bytes]:
        return [tlv(0x01, self.ident.bytes)]

    def caller(self, pcm: PCM) -> bytes:
        return tlv(self.kinds[self.rate], pcm.astype("<i2").tobytes())

    def stop(self) -> list[str | bytes]:
        return [tlv(0x00)]

    def mark_echo(self, name: str) -> list[str | bytes]:
        raise ConformanceError("AudioSocket has no marks")

    def _deliver(self, message: str | bytes) -> list[str | bytes]:
        if not isinstance(message, bytes):
            raise ConformanceError("AudioSocket is a byte stream")
        self.pending += message
        while len(self.pending) >= 3:
            kind = self.pending[0]
            length = int.from_bytes(self.pending[1:3], "big")
            if len(self.pending) < 3 + length:
                break
            payload = bytes(self.pending[3 : 3 + length])
            del self.pending[: 3 + length]
            if kind == 0x00 and not payload:
                self.hung_up = True
                continue
            if kind != self.kinds[self.rate]:
                raise ConformanceError(
                    f"expected audio type 0x{self.kinds[self.rate]:02x}, got 0x{kind:02x}"
                )
            self.enqueue_audio(np.frombuffer(payload, dtype="<i2").astype(np.int16))
        return []


PEERS: dict[str, type[Peer]] = {
    "twilio": TwilioPeer,
    "telnyx": TelnyxPeer,
    "plivo": PlivoPeer,
    "vonage": VonagePeer,
    "exotel": ExotelPeer,
    "teler": TelerPeer,
    "jambonz": JambonzPeer,
    "rawpcm": RawPcmPeer,
    "audiosocket": AudioSocketPeer,
}
"""Each peer by the protocol name it speaks (the tests check these are the registry's)."""
