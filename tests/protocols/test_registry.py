"""The protocol registry: one list, and facts on each codec class that its codec lives up to."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from voxwire.cli import _build_parser
from voxwire.errors import LocalProtocolError, RemoteProtocolError
from voxwire.protocols import (
    CODECS,
    AudioSocketCodec,
    MediaStreamCodec,
    RawPcmCodec,
    codec_factory,
    protocol_names,
)
from voxwire.protocols.jambonz import SUBPROTOCOL, JambonzCodec
from voxwire.protocols.registry import SUBPROTOCOLS, select_subprotocol
from voxwire.protocols.vonage import VonageCodec, parse_content_type
from voxwire.sim.providers import PROVIDERS

NAMES = list(CODECS)


def test_every_codec_is_registered_under_its_name_with_a_simulated_provider() -> None:
    assert all(cls.name == name for name, cls in CODECS.items())
    assert len({cls for cls in CODECS.values()}) == len(CODECS) >= 9
    assert list(PROVIDERS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_the_facts_are_well_formed(name: str) -> None:
    cls = CODECS[name]
    assert cls.transport in ("websocket", "tcp")
    assert cls.rates == tuple(sorted(set(cls.rates)))
    assert all(rate > 0 for rate in cls.rates)
    assert cls.default_rate in cls.rates
    assert cls.frame_ms > 0
    if cls.transport == "tcp":
        assert cls.subprotocols == ()
    assert set(cls.subprotocols) <= set(SUBPROTOCOLS)


def opened(name: str) -> tuple[MediaStreamCodec, int]:
    peer = PROVIDERS[name](strict=True)
    codec = CODECS[name]()
    for message in peer.opening():
        codec.receive(message, 0.0)
    assert codec.started is not None
    return codec, peer.rate


@pytest.mark.parametrize("name", NAMES)
def test_the_codec_does_what_its_facts_say(name: str) -> None:
    codec, rate = opened(name)
    assert rate in codec.rates
    if codec.supports_marks:
        assert codec.send_mark("m") != []
    else:
        with pytest.raises(LocalProtocolError, match="no marks"):
            codec.send_mark("m")
    assert (codec.send_clear() != []) == codec.supports_clear
    # a TCP codec takes the byte stream only; a WebSocket codec takes text frames too
    if codec.transport == "tcp":
        with pytest.raises(TypeError, match="byte stream"):
            codec.receive("{}", 0.0)
    else:
        codec.receive("{}", 0.0)


def test_the_codecs_that_check_the_line_rate_accept_exactly_their_rates() -> None:
    for rate in RawPcmCodec.rates:
        assert RawPcmCodec(sample_rate=rate).sample_rate == rate
    for rate in AudioSocketCodec.rates:
        assert AudioSocketCodec(sample_rate=rate).sample_rate == rate
    assert RawPcmCodec().sample_rate == RawPcmCodec.default_rate
    assert AudioSocketCodec().sample_rate == AudioSocketCodec.default_rate
    for cls in (RawPcmCodec, AudioSocketCodec):
        with pytest.raises(ValueError, match="sample_rate"):
            cls(sample_rate=11025)
    assert [parse_content_type(f"audio/l16;rate={r}") for r in VonageCodec.rates] == [
        8000,
        16000,
        24000,
    ]
    with pytest.raises(RemoteProtocolError):
        parse_content_type("audio/l16;rate=48000")


def test_protocol_names_select_by_fact_in_registry_order() -> None:
    assert protocol_names() == tuple(CODECS)
    assert protocol_names(transport="tcp") == ("audiosocket",)
    assert {"teler", "audiosocket"} <= set(protocol_names(supports_marks=False))
    assert "audiosocket" in protocol_names(supports_clear=False)
    assert "twilio" not in protocol_names(supports_clear=False)
    assert protocol_names(transport="websocket", supports_marks=True, supports_clear=False) == ()
    marks = protocol_names(supports_marks=True)
    assert marks == tuple(n for n in CODECS if CODECS[n].supports_marks)
    assert "twilio" in marks
    assert "teler" not in marks


def test_codec_factory_takes_a_name_or_a_factory() -> None:
    for name, cls in CODECS.items():
        codec = codec_factory(name)()
        assert type(codec) is cls
        assert codec.pipeline_rate is None  # caller audio stays at the line rate
        assert codec._resampler_factory is not None  # audio played at another rate is converted

    def factory() -> MediaStreamCodec:
        return RawPcmCodec(sample_rate=8000)

    assert codec_factory(factory) is factory
    with pytest.raises(KeyError, match=r"unknown protocol 'sip'.*twilio"):
        codec_factory("sip")


def test_subprotocols_come_from_the_codecs() -> None:
    assert JambonzCodec.subprotocols == (SUBPROTOCOL,)
    assert SUBPROTOCOLS == (SUBPROTOCOL,)
    assert select_subprotocol(["chat", SUBPROTOCOL]) == SUBPROTOCOL
    assert select_subprotocol(p for p in [SUBPROTOCOL]) == SUBPROTOCOL
    assert select_subprotocol(["chat"]) is None
    assert select_subprotocol([]) is None


def test_the_command_line_offers_the_registered_protocols() -> None:
    parser = _build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("serve", "call", "demo"):
        sub = subparsers.choices[command]
        (option,) = [a for a in sub._actions if "--protocol" in a.option_strings]
        # serve also answers browsers (WebRTC) and SIP calls, which are not media-stream codecs
        expected = [*NAMES, "webrtc", "sip"] if command == "serve" else NAMES
        assert list(option.choices or []) == expected, command


def test_raw_pcm_opening_with_audio_runs_at_the_constructed_rate() -> None:
    codec = RawPcmCodec(sample_rate=8000)
    started, _ = codec.receive(b"\x00\x00" * 160, 0.0)
    assert started is codec.started
    assert codec.media_format is not None
    assert codec.media_format.sample_rate == 8000
    assert codec.default_rate == RawPcmCodec.default_rate == 16000  # the protocol's usual rate
    assert len(codec.send_audio(np.zeros(160, np.int16))) == 1
