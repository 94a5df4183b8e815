"""The JSON + base64 codecs' native media path gives exactly what the resampler hook gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from voxwire import Resampler
from voxwire.protocols import (
    ExotelCodec,
    MediaStreamCodec,
    PlivoCodec,
    TelerCodec,
    TelnyxCodec,
    TwilioCodec,
)
from voxwire.protocols.base import Base64MediaCodec
from voxwire.protocols.events import Audio
from voxwire.sim.providers import (
    ExotelSide,
    PlivoSide,
    ProviderSide,
    TelerSide,
    TelnyxSide,
    TwilioSide,
)

CASES = [
    (TwilioSide, TwilioCodec),
    (TelnyxSide, TelnyxCodec),
    (ExotelSide, ExotelCodec),
    (PlivoSide, PlivoCodec),
    (TelerSide, TelerCodec),
]


def hook(in_rate: int, out_rate: int) -> Resampler[np.int16]:
    """voxwire's resampler behind a plain function: the codec must call it step by step."""
    return Resampler(in_rate, out_rate)


def opened(peer: ProviderSide, codec: MediaStreamCodec) -> MediaStreamCodec:
    for message in peer.opening():
        codec.receive(message, 0.0)
    assert codec.started is not None
    return codec


def audio_fields(events: list[Any]) -> list[tuple[object, ...]]:
    return [
        (e.pcm.tobytes(), e.sample_rate, e.line_rate, e.track, e.sequence, e.timestamp_ms)
        for e in events
        if isinstance(e, Audio)
    ]


@pytest.mark.parametrize(("peer_cls", "codec_cls"), CASES, ids=[c.name for _, c in CASES])
@pytest.mark.parametrize("pipeline_rate", [None, 16000, 48000])
def test_native_path_equals_the_hook(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec], pipeline_rate: int | None
) -> None:
    rng = np.random.default_rng(3)
    kw: dict[str, Any] = {"pipeline_rate": pipeline_rate}
    peer = peer_cls(strict=True)
    native = opened(peer, codec_cls(resampler=Resampler, **kw))
    stepwise = opened(peer_cls(call_id=peer.call_id), codec_cls(resampler=hook, **kw))
    assert isinstance(native, Base64MediaCodec)
    assert isinstance(stepwise, Base64MediaCodec)
    assert native._decoder is not None
    assert (stepwise._decoder is None) == (pipeline_rate not in (None, peer.rate))
    for i in range(12):
        pcm = rng.integers(-12000, 12000, peer.frame + (i % 3) * 8).astype(np.int16)
        message = peer.audio(pcm)
        assert audio_fields(native.receive(message, 0.02 * i)) == audio_fields(
            stepwise.receive(message, 0.02 * i)
        )
    for rate in (None, 24000, peer.rate):
        for n in (480, 7, 0, 960):
            pcm = rng.integers(-12000, 12000, n).astype(np.int16)
            assert native.send_audio(pcm, rate) == stepwise.send_audio(pcm, rate)
    assert native.handle_timer(10.0) == stepwise.handle_timer(10.0)
    assert native.stats.as_dict() == stepwise.stats.as_dict()


@pytest.mark.parametrize(("peer_cls", "codec_cls"), CASES, ids=[c.name for _, c in CASES])
def test_native_path_counts_bad_payloads(
    peer_cls: type[ProviderSide], codec_cls: type[MediaStreamCodec]
) -> None:
    peer = peer_cls(strict=True)
    codec = opened(peer, codec_cls())
    assert isinstance(codec, Base64MediaCodec)
    assert codec._decoder is not None
    good = peer.audio(np.zeros(peer.frame, dtype=np.int16))
    assert isinstance(good, str)
    payload = max(
        (part for part in good.split('"') if len(part) >= 40), key=len
    )  # the base64 field
    for bad, kind in (("Zm9v*mFy", "bad_base64"), ("Zm9", "bad_base64"), ("", "bad_frame_size")):
        assert codec.receive(good.replace(payload, bad), 0.0) == []
        assert getattr(codec.stats, kind) >= 1
    assert len(codec.receive(good, 0.0)) in (0, 1)  # the session goes on
