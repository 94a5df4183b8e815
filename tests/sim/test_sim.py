"""The simulated phone side, in memory: each provider side against voxwire's codec for it,
the phone's playout clock, and the correlation measure."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

import voxwire
from voxwire.protocols import CODECS, Audio, CallStarted, Cleared, MarkPlayed, protocol_names
from voxwire.resample import Resampler
from voxwire.sim import providers
from voxwire.sim.caller import Playout, aligned_correlation
from voxwire.sim.providers import PROVIDERS, ClearAudio, PlayAudio, PlayMark, Unexpected, events

G711 = {"twilio", "telnyx", "plivo"}
MARKS = set(protocol_names(supports_marks=True))


def tone(n: int, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3000, n).clip(-32768, 32767).astype(np.int16)


def on_line(protocol: str, rate: int, pcm: np.ndarray) -> np.ndarray:
    if protocol in G711 and rate == 8000:
        return np.asarray(voxwire.decode_ulaw(voxwire.encode_ulaw(pcm)))
    return pcm


def test_every_registered_protocol_has_a_simulated_side_and_no_other() -> None:
    assert list(PROVIDERS) == list(CODECS)


def test_the_former_module_name_gives_the_same_sides_with_a_warning() -> None:
    sys.modules.pop("voxwire.sim.provider", None)
    with pytest.warns(DeprecationWarning, match="voxwire.sim.providers"):
        former = importlib.import_module("voxwire.sim.provider")
    assert former.PROVIDERS is PROVIDERS
    for name in former.__all__:
        assert getattr(former, name) is getattr(providers, name, getattr(events, name, None))
    assert {side.__name__ for side in PROVIDERS.values()} <= set(former.__all__)


@pytest.mark.parametrize("protocol", list(CODECS))
def test_each_simulated_side_mirrors_its_codecs_module(protocol: str) -> None:
    module = CODECS[protocol].__module__.rsplit(".", 1)[-1]
    assert PROVIDERS[protocol].__module__ == f"voxwire.sim.providers.{module}"


@pytest.mark.parametrize("protocol", sorted(CODECS))
def test_the_simulated_side_takes_the_codecs_facts(protocol: str) -> None:
    side, codec = PROVIDERS[protocol], CODECS[protocol]
    assert side.codec is codec
    assert side.name == codec.name
    assert side.default_rate == codec.default_rate
    assert side.rates == codec.rates
    assert side.subprotocols == codec.subprotocols
    assert side.raw_tcp == (codec.transport == "tcp")
    assert (side.supports_marks, side.supports_clear) == (
        codec.supports_marks,
        codec.supports_clear,
    )


@pytest.mark.parametrize("protocol", sorted(CODECS))
def test_the_simulated_side_runs_at_every_rate_of_the_protocol(protocol: str) -> None:
    for rate in PROVIDERS[protocol].rates:
        side = PROVIDERS[protocol](rate, strict=True)
        codec = CODECS[protocol]()
        events = [e for m in side.opening() for e in codec.receive(m, 0.0)]
        events += codec.receive(side.audio(tone(side.frame, rate)), 0.02)
        started = [e for e in events if isinstance(e, CallStarted)]
        assert started[-1].media_format.sample_rate == rate, (protocol, rate)
        assert [len(e.pcm) for e in events if isinstance(e, Audio)] in ([side.frame], [])
        assert codec.stats.skipped == 0


@pytest.mark.parametrize("protocol", sorted(set(CODECS) - {"teler", "audiosocket"}))
def test_custom_parameters_reach_the_application(protocol: str) -> None:
    side = PROVIDERS[protocol](parameters={"room": "7", "agent": "echo"})
    codec = CODECS[protocol]()
    for message in side.opening():
        codec.receive(message, 0.0)
    assert codec.started is not None
    assert codec.started.custom_parameters.items() >= {"room": "7", "agent": "echo"}.items()


@pytest.mark.parametrize("protocol", sorted(PROVIDERS))
def test_provider_side_and_codec_understand_each_other(protocol: str) -> None:
    side = PROVIDERS[protocol]()
    codec = CODECS[protocol](pipeline_rate=16000, resampler=Resampler)
    events = [e for m in side.opening() for e in codec.receive(m, 0.0)]
    started = [e for e in events if isinstance(e, CallStarted)]
    assert len(started) == 1
    assert started[0].media_format.sample_rate == side.rate
    # caller audio arrives as the codec's Audio events, at the pipeline rate
    pcm = tone(side.frame * 5, side.rate)
    audio = [
        e
        for i in range(5)
        for e in codec.receive(side.audio(pcm[i * side.frame : (i + 1) * side.frame]), 0.1)
        if isinstance(e, Audio)
    ]
    got = sum(len(a.pcm) for a in audio)
    if protocol == "telnyx":
        audio += [e for e in codec.handle_timer(10.0) if isinstance(e, Audio)]
        got = sum(len(a.pcm) for a in audio)
    assert all(a.sample_rate == 16000 for a in audio)
    assert got > 0.8 * 5 * 320  # less only the resampler's few ms of latency
    assert codec.stats.skipped == 0
    # the application's audio, mark and clear reach the provider side as such
    reply = tone(side.frame * 3, side.rate, seed=1)
    sent = [e for m in codec.send_audio(reply) for e in side.parse(m)]
    assert all(isinstance(e, PlayAudio) for e in sent)
    np.testing.assert_array_equal(
        np.concatenate([e.pcm for e in sent]),  # type: ignore[union-attr]
        on_line(protocol, side.rate, reply),
    )
    if protocol in MARKS:
        assert [e for m in codec.send_mark("m1") for e in side.parse(m)] == [PlayMark("m1")]
        back = [e for m in side.mark_played("m1") for e in codec.receive(m, 0.2)]
        assert back == [MarkPlayed("m1")]
    cleared = [e for m in codec.send_clear() for e in side.parse(m)]
    if not codec.supports_clear:
        assert cleared == []  # no clear on the wire
    else:
        assert cleared == [ClearAudio()]
        answer = [e for m in side.cleared(["m2"]) for e in codec.receive(m, 0.3)]
        assert all(isinstance(e, (MarkPlayed, Cleared)) for e in answer)
        assert codec.stats.skipped == 0
    for message in side.closing():
        codec.receive(message, 0.4)
    assert codec.stats.skipped == 0


def test_provider_side_flags_what_the_provider_would_refuse() -> None:
    side = PROVIDERS["twilio"]()
    side.opening()
    assert isinstance(side.parse('{"event": "media", "streamSid": "other"}')[0], Unexpected)
    assert isinstance(side.parse(b"\x00\x01")[0], Unexpected)
    vonage = PROVIDERS["vonage"]()
    assert isinstance(vonage.parse(b"\x00" * 100)[0], Unexpected)  # not 20 ms
    with pytest.raises(ValueError, match="8000"):
        PROVIDERS["twilio"](16000)


def test_playout_plays_in_real_time_and_times_marks() -> None:
    p = Playout(8000, t0=10.0)
    assert p.enqueue(np.ones(160, np.int16), 10.1) == 800  # idle: plays on arrival
    assert p.enqueue(np.ones(160, np.int16), 10.105) == 960  # queued behind
    assert p.mark("a", 10.105) == 1120
    assert p.next_due() == pytest.approx(10.14)
    assert p.due(10.139) == []
    assert p.due(10.14) == ["a"]
    assert not p.playing(10.14)
    # a mark with nothing queued is due at once
    p.mark("b", 10.2)
    assert p.due(10.2) == ["b"]


def test_playout_clear_cuts_playback_and_returns_pending_marks() -> None:
    p = Playout(8000, t0=0.0)
    p.enqueue(np.full(800, 7, np.int16), 0.0)  # 100 ms
    p.mark("x", 0.0)
    p.enqueue(np.full(800, 9, np.int16), 0.0)
    p.mark("y", 0.0)
    assert p.clear(0.05) == ["x", "y"]
    track = p.track()
    assert len(track) == 400
    assert (track == 7).all()
    assert p.due(1.0) == []
    assert p.enqueue(np.ones(8, np.int16), 0.06) == 480


def test_aligned_correlation_finds_a_delayed_copy() -> None:
    x = tone(800, 8000)
    heard = np.concatenate([np.zeros(1234, np.int16), (x // 2), np.zeros(300, np.int16)])
    value, lag = aligned_correlation(x, heard)
    assert lag == 1234
    assert value > 0.999
    noise = tone(3000, 8000, seed=5)
    assert aligned_correlation(x, noise)[0] < 0.2
    assert aligned_correlation(x, np.zeros(3000, np.int16)) == (0.0, 0)
    assert aligned_correlation(x, x[:100]) == (0.0, -1)
