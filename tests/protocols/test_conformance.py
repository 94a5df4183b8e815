"""Conformance of every codec against the strict simulated provider of its protocol.

Each case wires a codec to a :class:`FakePhone` over a strict provider side
(:mod:`voxwire.sim.providers`): anything the codec sends that the provider's documentation
does not allow raises :class:`~voxwire.errors.ConformanceError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import voxwire
from voxwire.protocols import (
    CODECS,
    Audio,
    AudioSocketCodec,
    CallStarted,
    Cleared,
    Connected,
    Event,
    ExotelCodec,
    JambonzCodec,
    MarkPlayed,
    MediaStreamCodec,
    PlivoCodec,
    RawPcmCodec,
    Stopped,
    TelerCodec,
    TelnyxCodec,
    TwilioCodec,
    VonageCodec,
)
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import (
    AudioSocketSide,
    ExotelSide,
    JambonzSide,
    PlivoSide,
    RawPcmSide,
    TelerSide,
    TelnyxSide,
    TwilioSide,
    VonageSide,
)


@dataclass
class Case:
    name: str
    peer: Callable[[], FakePhone[Any]]
    codec: Callable[[], MediaStreamCodec]
    lossy: bool  # G.711 on the line
    connected: bool  # a Connected event comes first
    clear_reply: type | None  # event the peer answers a clear with (besides marks)
    clear_returns_marks: bool


CASES = [
    Case(
        "twilio",
        lambda: FakePhone(TwilioSide(strict=True, parameters={"agent": "echo"})),
        TwilioCodec,
        True,
        True,
        None,
        True,
    ),
    Case("telnyx", lambda: FakePhone(TelnyxSide(strict=True)), TelnyxCodec, True, True, None, True),
    Case(
        "telnyx-l16",
        lambda: FakePhone(TelnyxSide(16000, encoding="L16", strict=True)),
        TelnyxCodec,
        False,
        True,
        None,
        True,
    ),
    Case(
        "telnyx-pcma",
        lambda: FakePhone(TelnyxSide(encoding="PCMA", strict=True)),
        TelnyxCodec,
        True,
        True,
        None,
        True,
    ),
    Case(
        "exotel", lambda: FakePhone(ExotelSide(strict=True)), ExotelCodec, False, True, None, False
    ),
    Case(
        "plivo",
        lambda: FakePhone(
            PlivoSide(strict=True, parameters={"userId": "12345", "sessionId": "abc-xyz"})
        ),
        PlivoCodec,
        True,
        False,
        Cleared,
        False,
    ),
    Case(
        "plivo-l16",
        lambda: FakePhone(PlivoSide(16000, strict=True)),
        PlivoCodec,
        False,
        False,
        Cleared,
        False,
    ),
    Case(
        "vonage",
        lambda: FakePhone(VonageSide(strict=True)),
        VonageCodec,
        False,
        True,
        Cleared,
        False,
    ),
    Case(
        "vonage-8k",
        lambda: FakePhone(VonageSide(8000, strict=True)),
        VonageCodec,
        False,
        True,
        Cleared,
        False,
    ),
    Case("teler", lambda: FakePhone(TelerSide(strict=True)), TelerCodec, False, False, None, False),
    Case(
        "jambonz",
        lambda: FakePhone(JambonzSide(16000, strict=True)),
        JambonzCodec,
        False,
        True,
        None,
        True,
    ),
    Case(
        "rawpcm",
        lambda: FakePhone(RawPcmSide(strict=True)),
        RawPcmCodec,
        False,
        False,
        Cleared,
        True,
    ),
    Case(
        "audiosocket",
        lambda: FakePhone(AudioSocketSide(strict=True)),
        AudioSocketCodec,
        False,
        False,
        None,
        False,
    ),
]
IDS = [c.name for c in CASES]
MARKS = [c for c in CASES if c.codec().supports_marks]
STOPS = [c for c in CASES if c.peer().hang_up()]


def tone(rate: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 3000, n)).clip(-32768, 32767).astype(np.int16)


def line(case: Case, pcm: np.ndarray) -> np.ndarray:
    """What the peer hears/sends after the line encoding."""
    if not case.lossy:
        return pcm
    if "pcma" in case.name:
        return np.frombuffer(voxwire.decode_alaw(voxwire.encode_alaw(pcm.tobytes())), np.int16)
    return np.frombuffer(voxwire.decode_ulaw(voxwire.encode_ulaw(pcm.tobytes())), np.int16)


def start(case: Case) -> tuple[FakePhone[Any], MediaStreamCodec, list[Event]]:
    peer = case.peer()
    codec = case.codec()
    events: list[Event] = []
    for message in peer.opening():
        events += codec.receive(message, 0.0)
    return peer, codec, events


def feed(codec: MediaStreamCodec, messages: list[str | bytes], now: float = 0.0) -> list[Event]:
    out: list[Event] = []
    for message in messages:
        out += codec.receive(message, now)
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_opening_announces_the_call_and_its_format(case: Case) -> None:
    peer, codec, events = start(case)
    kinds = [type(e) for e in events]
    assert kinds == ([Connected, CallStarted] if case.connected else [CallStarted])
    started = events[-1]
    assert isinstance(started, CallStarted)
    assert started.media_format.sample_rate == peer.rate
    assert started.media_format.channels == 1
    assert codec.started is started
    assert codec.stats.skipped == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inbound_audio_decodes_to_the_callers_pcm(case: Case) -> None:
    peer, codec, _ = start(case)
    chunks = [tone(peer.rate, peer.frame, seed) for seed in range(12)]
    events = feed(codec, [peer.say(c) for c in chunks])
    assert all(isinstance(e, Audio) for e in events)
    audio = [e for e in events if isinstance(e, Audio)]
    assert len(audio) == len(chunks)
    for event, chunk in zip(audio, chunks, strict=True):
        assert event.pcm.dtype == np.int16
        np.testing.assert_array_equal(event.pcm, line(case, chunk))
        assert event.sample_rate == event.line_rate == peer.rate
    assert codec.stats.audio_chunks_in == 12
    assert codec.stats.audio_samples_in == 12 * peer.frame


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_outbound_audio_has_the_documented_shape_and_plays(case: Case) -> None:
    peer, codec, _ = start(case)
    frames = [tone(peer.rate, peer.frame, 100 + i) for i in range(10)]
    for i, frame in enumerate(frames):
        peer.advance(i * 0.02)
        for message in codec.send_audio(frame):
            assert peer.deliver(message) == []
    peer.advance(1.0)
    np.testing.assert_array_equal(peer.heard(), line(case, np.concatenate(frames)))
    assert codec.stats.audio_samples_out == 10 * peer.frame


@pytest.mark.parametrize("case", MARKS, ids=[c.name for c in MARKS])
def test_mark_is_echoed_only_after_the_audio_before_it_played(case: Case) -> None:
    peer, codec, _ = start(case)
    for i in range(5):
        for message in codec.send_audio(tone(peer.rate, peer.frame, i)):
            peer.deliver(message)
    for message in codec.send_mark("greeting"):
        peer.deliver(message)
    assert peer.advance(0.099) == []
    echoes = peer.advance(0.100)
    assert feed(codec, echoes) == [MarkPlayed("greeting")]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_clear_flushes_the_peer_and_reports_back(case: Case) -> None:
    peer, codec, _ = start(case)
    frames = [tone(peer.rate, peer.frame, 200 + i) for i in range(10)]
    for frame in frames:
        for message in codec.send_audio(frame):
            peer.deliver(message)
    if codec.supports_marks:
        for message in codec.send_mark("reply-1"):
            peer.deliver(message)
    peer.advance(0.04)
    replies: list[str | bytes] = []
    for message in codec.send_clear():
        replies += peer.deliver(message)
    events = feed(codec, replies + peer.advance(1.0))
    if not codec.supports_clear:
        # no clear on the wire: the codec sends nothing and the audio already sent plays
        assert codec.send_clear() == []
        assert len(peer.heard()) == 10 * peer.frame
        return
    np.testing.assert_array_equal(peer.heard(), line(case, np.concatenate(frames[:2])))
    expected: list[Event] = []
    if codec.supports_marks and case.clear_returns_marks:
        expected.append(
            MarkPlayed("reply-1", cleared=True) if case.name == "jambonz" else MarkPlayed("reply-1")
        )
    if case.clear_reply is not None:
        expected.append(case.clear_reply())
    assert events == expected
    assert codec.stats.clears_out >= 1


@pytest.mark.parametrize("case", STOPS, ids=[c.name for c in STOPS])
def test_stop_ends_the_stream(case: Case) -> None:
    peer, codec, _ = start(case)
    events = feed(codec, peer.hang_up())
    assert isinstance(events[-1], Stopped)
    assert codec.stopped
    assert feed(codec, [peer.say(tone(peer.rate, peer.frame, 1))]) == []
    assert codec.stats.after_stop == 1


def test_every_registered_codec_has_a_case() -> None:
    assert {type(case.codec()).name for case in CASES} == set(CODECS)


# --- protocol details -------------------------------------------------------------------


def test_twilio_counters_are_strings_and_metadata_kept() -> None:
    peer, codec, events = start(CASES[0])
    started = events[-1]
    assert isinstance(started, CallStarted)
    assert started.stream_id == peer.side.sid
    assert started.call_id == peer.side.call_sid
    assert started.custom_parameters == {"agent": "echo"}
    assert started.media_format.encoding == "mulaw"
    (audio,) = codec.receive(peer.say(tone(8000, 160, 3)), 0.0)
    assert isinstance(audio, Audio)
    assert audio.sequence == 1
    assert audio.timestamp_ms == 0
    out = json.loads(codec.send_mark("m")[0])
    assert out == {"event": "mark", "streamSid": peer.side.sid, "mark": {"name": "m"}}
    assert json.loads(codec.send_clear()[0]) == {"event": "clear", "streamSid": peer.side.sid}
    (dtmf,) = codec.receive(peer.side.dtmf("7"), 0.0)
    assert dtmf == voxwire.protocols.Dtmf("7")


def test_plivo_numbers_are_numbers_and_extra_headers_parsed() -> None:
    peer, codec, events = start(CASES[5])
    started = events[0]
    assert isinstance(started, CallStarted)
    assert started.custom_parameters == {"userId": "12345", "sessionId": "abc-xyz"}
    play = json.loads(codec.send_audio(tone(8000, 160, 1))[0])
    assert play["media"]["sampleRate"] == 8000
    assert play["media"]["contentType"] == "audio/x-mulaw"
    assert json.loads(codec.send_mark("cp")[0]) == {
        "event": "checkpoint",
        "streamId": peer.side.stream_id,
        "name": "cp",
    }


def test_vonage_frames_are_binary_20ms_and_other_sizes_are_skipped() -> None:
    _peer, codec, _ = start(CASES[7])
    assert codec.receive(bytes(638), 0.0) == []
    assert codec.receive(bytes(642), 0.0) == []
    assert codec.stats.bad_frame_size == 2
    (audio,) = codec.receive(bytes(640), 0.0)
    assert isinstance(audio, Audio)
    assert len(audio.pcm) == 320
    messages = codec.send_audio(np.zeros(960, np.int16))
    assert [len(m) for m in messages] == [640, 640, 640]
    assert all(isinstance(m, bytes) for m in messages)
    with pytest.raises(voxwire.errors.LocalProtocolError, match="20 ms"):
        codec.send_audio(np.zeros(100, np.int16))
    assert json.loads(codec.send_clear()[0]) == {"action": "clear"}


def test_teler_chunk_ids_are_unique_and_interrupt_names_one() -> None:
    peer, codec, _ = start(CASES[9])
    assert isinstance(codec, TelerCodec)
    for i in range(3):
        for message in codec.send_audio(tone(8000, 160, i)):
            peer.deliver(message)
    assert peer.side.chunk_ids == [1, 2, 3]
    (interrupt,) = codec.send_interrupt(2)
    assert json.loads(interrupt) == {"type": "interrupt", "chunk_id": 2}
    assert peer.deliver(interrupt) == []  # the strict side checks it names a chunk it got
    with pytest.raises(voxwire.errors.LocalProtocolError):
        codec.send_interrupt(4)
    with pytest.raises(voxwire.errors.LocalProtocolError, match="no marks"):
        codec.send_mark("m")


def test_jambonz_refuses_stereo() -> None:
    codec = JambonzCodec()
    with pytest.raises(voxwire.errors.RemoteProtocolError, match="mono"):
        codec.receive(json.dumps({"callSid": "x", "sampleRate": 8000, "mixType": "stereo"}), 0.0)


def test_telnyx_refuses_codecs_it_cannot_decode() -> None:
    side = TelnyxSide(encoding="OPUS", strict=True)
    codec = TelnyxCodec()
    with pytest.raises(voxwire.errors.RemoteProtocolError, match="PCMU"):
        feed(codec, side.opening())


def test_audiosocket_higher_rate_reannounces_the_format() -> None:
    side = AudioSocketSide(16000, strict=True)
    codec = AudioSocketCodec()
    events = feed(codec, side.opening())
    assert isinstance(events[0], CallStarted)
    assert events[0].media_format.sample_rate == 8000
    events = codec.receive(side.audio(tone(16000, 320, 1)), 0.0)
    assert [type(e) for e in events] == [CallStarted, Audio]
    assert events[0].media_format.sample_rate == 16000  # type: ignore[union-attr]
    # a later message at another rate is skipped, the stream goes on
    assert codec.receive(AudioSocketSide(8000).audio(tone(8000, 160, 2)), 0.0) == []
    assert codec.stats.bad_frame_size == 1
    out = codec.send_audio(tone(16000, 320, 3))
    assert out[0][:3] == bytes([0x12, 0x02, 0x80])


# --- the resampler hook -----------------------------------------------------------------


class Repeat:
    """A test double standing in for a resampler: integer-ratio sample repetition/decimation."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate

    def process(self, pcm: np.ndarray) -> np.ndarray:
        if self.out_rate >= self.in_rate:
            return np.repeat(pcm, self.out_rate // self.in_rate)
        return pcm[:: self.in_rate // self.out_rate].copy()


def test_resampler_hook_converts_both_directions() -> None:
    made: list[tuple[int, int]] = []

    def factory(in_rate: int, out_rate: int) -> Repeat:
        made.append((in_rate, out_rate))
        return Repeat(in_rate, out_rate)

    peer = FakePhone(TwilioSide(strict=True))
    codec = TwilioCodec(pipeline_rate=16000, resampler=factory)
    feed(codec, peer.opening())
    assert made == [(8000, 16000)]
    chunk = tone(8000, 160, 5)
    (audio,) = codec.receive(peer.say(chunk), 0.0)
    assert isinstance(audio, Audio)
    assert (audio.sample_rate, audio.line_rate, len(audio.pcm)) == (16000, 8000, 320)
    np.testing.assert_array_equal(audio.pcm[::2], line(CASES[0], chunk))
    # TTS audio at 24 kHz goes out at the line rate through a second resampler
    for message in codec.send_audio(np.repeat(chunk, 3), sample_rate=24000):
        peer.deliver(message)
    assert made == [(8000, 16000), (24000, 8000)]
    peer.advance(1.0)
    np.testing.assert_array_equal(peer.heard(), line(CASES[0], chunk))


def test_pipeline_rate_without_a_resampler_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="needs a resampler"):
        TwilioCodec(pipeline_rate=16000)
