"""jambonz ``listen`` verb with streaming bidirectional audio.

Follows https://docs.jambonz.org/verbs/verbs/listen (also published at
https://www.jambonz.org/docs/webhooks/listen/) and
https://www.jambonz.org/docs/supporting-articles/bidirectional-audio/.

jambonz connects with the WebSocket subprotocol ``audio.jambonz.org``. Its first message is
one JSON text frame with the call's attributes (``callSid``, ``from``, ``to``, ...), the
``sampleRate`` and ``mixType`` of the audio, and any ``metadata`` the verb added; after it
come binary frames of 16-bit little-endian linear PCM at ``sampleRate``. Only
``mixType`` ``"mono"`` is a single channel; ``stereo`` and ``mixed`` are refused.
With ``passDtmf`` jambonz sends DTMF as JSON text frames.

With ``bidirectionalAudio: {enabled: true, streaming: true, sampleRate: N}`` the
application sends binary frames of L16 PCM at ``N`` back (the codec sends at the line
rate, so set ``N`` to the verb's ``sampleRate``).

Control messages. The stored copies of the pages above describe the first frame and the
streaming mode but not the control messages, so their shapes are less certain than the
rest of this codec. ``{"type": "killAudio"}`` (stop playback and drop queued audio) is
corroborated by public implementations of the FreeSWITCH module jambonz streams through
(mod_audio_fork). The marks follow jambonz's description of the listen verb's
bidirectional audio as we read it, not verified against a stored copy: to jambonz
``{"type": "mark", "data": {"name": ...}}`` and ``{"type": "clearMarks"}``; from jambonz
``{"type": "mark", "data": {"name": ..., "event": "playout" | "cleared"}}``; DTMF (with
``passDtmf``) as ``{"event": "dtmf", "dtmf": "5", "duration": ...}``. ``send_clear``
sends ``killAudio`` then ``clearMarks``.
"""

from __future__ import annotations

from typing import ClassVar

from voxwire._types import PCM
from voxwire.errors import RemoteProtocolError
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.events import (
    CallStarted,
    Connected,
    Dtmf,
    Event,
    MarkPlayed,
    MediaFormat,
)
from voxwire.protocols.parsing import (
    Skip,
    dumps,
    get_int,
    get_obj,
    get_str,
    parse_json_object,
    str_mapping,
)
from voxwire.protocols.payload import encode_payload

__all__ = ["SUBPROTOCOL", "JambonzCodec"]

SUBPROTOCOL = "audio.jambonz.org"
"""The WebSocket subprotocol jambonz asks for (``JambonzCodec.subprotocols``)."""


class JambonzCodec(MediaStreamCodec):
    """Sans-I/O codec for one jambonz ``listen`` stream; see the module docstring."""

    name: ClassVar[str] = "jambonz"
    subprotocols: ClassVar[tuple[str, ...]] = (SUBPROTOCOL,)
    default_rate: ClassVar[int] = 16000
    rates: ClassVar[tuple[int, ...]] = (8000, 16000, 24000, 48000)

    def _receive(self, data: str | bytes, now: float) -> list[Event]:
        if isinstance(data, bytes):
            if self.started is None:
                raise Skip("media_before_start", "audio before the metadata frame")
            return [self._audio_event(data)]
        msg = parse_json_object(data)
        if self.started is None:
            return self._on_metadata(msg)
        if msg.get("event") == "dtmf":
            return [Dtmf(get_str(msg, "dtmf"), get_int(msg, "duration"))]
        kind = get_str(msg, "type", "")
        if kind == "mark":
            body = get_obj(msg, "data")
            state = get_str(body, "event", "playout")
            if state not in ("playout", "cleared"):
                raise Skip("malformed", f"mark event: expected playout/cleared, got {state!r:.40}")
            return [MarkPlayed(get_str(body, "name"), cleared=state == "cleared")]
        if "callSid" in msg and "sampleRate" in msg:
            raise Skip("duplicate_start", "a second metadata frame")
        raise Skip("unknown_event", f"unknown message {kind or msg.get('event')!r:.40}")

    def _on_metadata(self, msg: dict[str, object]) -> list[Event]:
        rate = get_int(msg, "sampleRate", required=True)
        assert rate is not None
        mix = get_str(msg, "mixType", "mono")
        if mix != "mono":
            raise RemoteProtocolError(f"expected mixType mono, got {mix!r:.40}")
        call_sid = get_str(msg, "callSid", "")
        custom = str_mapping(msg.get("metadata"), "metadata")
        started = CallStarted(
            stream_id=call_sid,
            call_id=call_sid,
            media_format=MediaFormat("l16", rate),
            custom_parameters=custom,
            metadata=msg,
        )
        return [Connected(SUBPROTOCOL, ""), *self._start(started)]

    def _audio_messages(self, pcm: PCM) -> list[Outbound]:
        assert self.started is not None
        return [encode_payload(pcm, self.started.media_format)]

    def _mark_messages(self, name: str) -> list[Outbound]:
        return [dumps({"type": "mark", "data": {"name": name}})]

    def _clear_messages(self) -> list[Outbound]:
        return [dumps({"type": "killAudio"}), dumps({"type": "clearMarks"})]
