"""Bad input: counted and skipped, or a typed error; never anything else."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from voxwire.protocols import (
    CODECS,
    AudioSocketCodec,
    JambonzCodec,
    MediaStreamCodec,
    RawPcmCodec,
    TelerCodec,
    VonageCodec,
    protocol_names,
)
from voxwire.protocols.base import Base64MediaCodec
from voxwire.sim.providers import PROVIDERS, ProviderSide

ALL_WS = [(PROVIDERS[name], CODECS[name]) for name in protocol_names(transport="websocket")]
JSON_MEDIA = [case for case in ALL_WS if issubclass(case[1], Base64MediaCodec)]


def ids(cases: list[tuple[type[ProviderSide], type[MediaStreamCodec]]]) -> list[str]:
    return [codec.name for _, codec in cases]


def started(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec], **kw: Any
) -> tuple[ProviderSide, MediaStreamCodec]:
    peer = peer_cls(strict=True)
    codec = codec_cls(**kw)
    for message in peer.opening():
        codec.receive(message, 0.0)
    assert codec.started is not None
    return peer, codec


def frame(peer: ProviderSide) -> np.ndarray:
    return np.zeros(peer.frame, dtype=np.int16)


def replace_payload(obj: Any, value: str) -> bool:
    """Replace the first base64 audio field found, in place."""
    if isinstance(obj, dict):
        for key in ("payload", "audio_b64"):
            if key in obj:
                obj[key] = value
                return True
        return any(replace_payload(v, value) for v in obj.values())
    return False


@pytest.mark.parametrize(("peer_cls", "codec_cls"), ALL_WS, ids=ids(ALL_WS))
def test_malformed_json_is_counted_and_skipped(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    peer, codec = started(peer_cls, codec_cls)
    for text in ("{not json", "[1, 2]", '"media"', "null", '{"event": 5}', "{}"):
        assert codec.receive(text, 0.0) == []
    assert codec.stats.malformed + codec.stats.unknown_event == 6
    assert "malformed" in codec.stats.first_reason
    # the session goes on
    assert len(codec.receive(peer.audio(frame(peer)), 0.0)) == 1


@pytest.mark.parametrize(("peer_cls", "codec_cls"), JSON_MEDIA, ids=ids(JSON_MEDIA))
@pytest.mark.parametrize("payload", ["@@@@", "AAA", "AA=A", "Zm9v\x00", 12])
def test_bad_base64_is_counted_and_skipped(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec], payload: object
) -> None:
    peer, codec = started(peer_cls, codec_cls)
    msg = json.loads(peer.audio(frame(peer)))
    assert replace_payload(msg, payload)  # type: ignore[arg-type]
    assert codec.receive(json.dumps(msg), 0.0) == []
    assert codec.stats.bad_base64 + codec.stats.malformed == 1
    assert codec.stats.skipped == 1


@pytest.mark.parametrize(("peer_cls", "codec_cls"), JSON_MEDIA, ids=ids(JSON_MEDIA))
def test_odd_l16_and_empty_payloads_are_wrong_frame_sizes(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    peer, codec = started(peer_cls, codec_cls)
    msg = json.loads(peer.audio(frame(peer)))
    replace_payload(msg, "")
    assert codec.receive(json.dumps(msg), 0.0) == []
    assert codec.stats.bad_frame_size == 1


@pytest.mark.parametrize(("peer_cls", "codec_cls"), JSON_MEDIA, ids=ids(JSON_MEDIA))
def test_unknown_events_are_counted_and_skipped(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    _, codec = started(peer_cls, codec_cls)
    key = "type" if codec_cls is TelerCodec else "event"
    assert codec.receive(json.dumps({key: "transcription", "text": "hi"}), 0.0) == []
    assert codec.stats.unknown_event == 1


# raw PCM starts on its first audio frame, by design
EXPLICIT_START = [case for case in ALL_WS if not issubclass(case[1], RawPcmCodec)]


@pytest.mark.parametrize(("peer_cls", "codec_cls"), EXPLICIT_START, ids=ids(EXPLICIT_START))
def test_media_before_start_is_counted_and_skipped(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    peer = peer_cls(strict=True)
    codec = codec_cls()
    media = peer.audio(frame(peer))
    assert codec.receive(media, 0.0) == []
    assert codec.stats.media_before_start == 1
    for message in peer.opening():
        codec.receive(message, 0.0)
    assert len(codec.receive(media, 0.0)) == 1


@pytest.mark.parametrize(("peer_cls", "codec_cls"), ALL_WS, ids=ids(ALL_WS))
def test_duplicate_start_is_skipped_and_a_second_stream_is_an_error(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    peer, codec = started(peer_cls, codec_cls)
    start = peer.opening()[-1]
    assert codec.receive(start, 0.0) == []
    assert codec.stats.duplicate_start == 1
    if isinstance(codec, (JambonzCodec, RawPcmCodec, VonageCodec)):
        return  # no stream identifier to tell another stream apart
    other = start.replace(codec.started.stream_id, "another-stream")  # type: ignore[union-attr,arg-type]
    with pytest.raises(RemoteProtocolError, match="second start"):
        codec.receive(other, 0.0)


@pytest.mark.parametrize(("peer_cls", "codec_cls"), JSON_MEDIA, ids=ids(JSON_MEDIA))
def test_binary_frames_on_a_text_protocol_are_skipped(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    _, codec = started(peer_cls, codec_cls)
    assert codec.receive(b"\x00\x01\x02", 0.0) == []
    assert codec.stats.wrong_frame_type == 1


@pytest.mark.parametrize(("peer_cls", "codec_cls"), ALL_WS, ids=ids(ALL_WS))
def test_too_many_bad_messages_end_the_session(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    _, codec = started(peer_cls, codec_cls, max_skipped=3)
    for _ in range(3):
        codec.receive("{", 0.0)
    with pytest.raises(RemoteProtocolError, match="3 allowed"):
        codec.receive("{", 0.0)


@pytest.mark.parametrize(("peer_cls", "codec_cls"), ALL_WS, ids=ids(ALL_WS))
def test_sending_outside_the_protocol_is_a_local_error(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    peer = peer_cls(strict=True)
    codec = codec_cls()
    with pytest.raises(LocalProtocolError, match="before the stream has started"):
        codec.send_audio(frame(peer))
    with pytest.raises(LocalProtocolError):
        codec.send_clear()
    for message in peer.opening():
        codec.receive(message, 0.0)
    with pytest.raises(LocalProtocolError):
        codec.send_mark("")
    with pytest.raises(TypeError, match="int16"):
        codec.send_audio(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="resampler"):
        codec.send_audio(frame(peer), sample_rate=44100)


def test_errors_are_value_errors_for_callers_that_catch_broadly() -> None:
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(ProtocolError, ValueError)


def test_audiosocket_framing_survives_any_chunking_and_bad_messages() -> None:
    codec = AudioSocketCodec()
    stream = (
        bytes([0x01, 0, 16])
        + bytes(range(16))
        + bytes([0x10, 0, 3, 1, 2, 3])  # odd length: skipped
        + bytes([0x42, 0, 1, 9])  # unknown type: skipped
        + bytes([0x03, 0, 1])
        + b"5"
        + bytes([0x10, 0, 4, 1, 0, 2, 0])
        + bytes([0xFF, 0, 1, 0x01])
        + bytes([0x00, 0, 0])
    )
    events = []
    for i in range(len(stream)):
        events += codec.receive(stream[i : i + 1], 0.0)
    names = [type(e).__name__ for e in events]
    assert names == ["CallStarted", "Dtmf", "Audio", "RemoteError", "Stopped"]
    assert codec.stats.bad_frame_size == 1
    assert codec.stats.unknown_event == 1
    assert events[3].detail == "caller hung up"  # type: ignore[union-attr]
    assert list(events[2].pcm) == [1, 2]  # type: ignore[union-attr]


@settings(max_examples=80, deadline=None)
@given(
    payloads=st.lists(
        st.binary(min_size=0, max_size=40).map(lambda b: b[: len(b) // 2 * 2]), max_size=12
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=20),
)
def test_audiosocket_streaming_equals_one_shot_for_any_chunking(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = bytes([0x01, 0, 16]) + bytes(16)
    for payload in payloads:
        stream += bytes([0x10]) + len(payload).to_bytes(2, "big") + payload
        stream += bytes([0x03, 0, 1]) + b"#"
    one_shot = AudioSocketCodec()
    expected = one_shot.receive(stream, 0.0)
    chunked = AudioSocketCodec()
    got = []
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for a, b in itertools.pairwise(bounds):
        got += chunked.receive(stream[a:b], 0.0)
    assert [repr(e) for e in got] == [repr(e) for e in expected]
    assert chunked.stats.as_dict() == {
        **one_shot.stats.as_dict(),
        "messages_in": chunked.stats.messages_in,
    }
    assert chunked.buffered == 0
