"""Fuzzing every inbound parser: arbitrary input raises nothing but voxwire's protocol errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxwire.errors import ProtocolError
from voxwire.protocols import CODECS, MediaStreamCodec
from voxwire.sim.providers import PROVIDERS, ProviderSide

CASES: list[tuple[type[ProviderSide], type[MediaStreamCodec]]] = [
    (PROVIDERS[name], codec) for name, codec in CODECS.items()
]

KEYS = [
    "event",
    "type",
    "start",
    "media",
    "payload",
    "mark",
    "name",
    "dtmf",
    "digit",
    "stop",
    "streamSid",
    "stream_id",
    "stream_sid",
    "streamId",
    "callSid",
    "call_sid",
    "callId",
    "mediaFormat",
    "media_format",
    "encoding",
    "sampleRate",
    "sample_rate",
    "channels",
    "bit_rate",
    "chunk",
    "timestamp",
    "track",
    "tracks",
    "sequenceNumber",
    "sequence_number",
    "customParameters",
    "custom_parameters",
    "data",
    "audio_b64",
    "content-type",
    "mixType",
    "extra_headers",
    "duration",
    "message_id",
    "error",
    "code",
    "detail",
    "parameters",
]
WORDS = [
    "connected",
    "start",
    "media",
    "mark",
    "clear",
    "stop",
    "dtmf",
    "playedStream",
    "clearedAudio",
    "audio",
    "websocket:connected",
    "websocket:dtmf",
    "websocket:notify",
    "websocket:cleared",
    "audio/x-mulaw",
    "audio/x-l16",
    "audio/x-raw",
    "audio/l16",
    "audio/l16;rate=16000",
    "audio/l16;rate=7",
    "PCMU",
    "PCMA",
    "L16",
    "OPUS",
    "mono",
    "stereo",
    "inbound",
    "//8=",
    "AAAA",
    "AAA",
    "8000",
    "16000",
    "-1",
    "1e3",
    "",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
shapes = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=6),
    ),
    max_leaves=12,
)


def dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


messages = st.one_of(
    st.binary(max_size=700),
    st.text(max_size=200),
    shapes.map(dump),
    st.dictionaries(st.sampled_from(KEYS), shapes, max_size=6).map(dump),
)


def run(codec: MediaStreamCodec, inputs: list[str | bytes]) -> None:
    now = 0.0
    for message in inputs:
        if codec.transport == "tcp" and isinstance(message, str):
            message = message.encode("utf-8", "surrogatepass")
        try:
            events = codec.receive(message, now)
            events += codec.handle_timer(now + 1.0)
        except ProtocolError:
            return
        for event in events:
            assert type(event).__module__ == "voxwire.protocols.events"
        now += 0.02


@pytest.mark.parametrize(("peer_cls", "codec_cls"), CASES, ids=[c.name for _, c in CASES])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=st.lists(messages, max_size=6), after_start=st.booleans())
def test_parsers_raise_only_protocol_errors(
    peer_cls: type[ProviderSide],
    codec_cls: type[MediaStreamCodec],
    inputs: list[str | bytes],
    after_start: bool,
) -> None:
    codec = codec_cls()
    prefix = peer_cls(strict=True).opening() if after_start else []
    run(codec, [*prefix, *inputs])


@pytest.mark.parametrize(("peer_cls", "codec_cls"), CASES, ids=[c.name for _, c in CASES])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_mutated_valid_messages_raise_only_protocol_errors(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec], data: st.DataObject
) -> None:
    import numpy as np

    peer = peer_cls(strict=True)
    valid = [*peer.opening(), peer.audio(np.zeros(peer.frame, np.int16))]
    mutated: list[str | bytes] = []
    for message in valid:
        raw = message.encode() if isinstance(message, str) else message
        cut = data.draw(st.integers(0, len(raw)))
        flip = data.draw(st.binary(max_size=4))
        out = raw[:cut] + flip + raw[cut + len(flip) :]
        mutated.append(out.decode("utf-8", "replace") if isinstance(message, str) else out)
    run(codec_cls(), mutated)
