"""VAD: onsets and offsets on tone bursts and speech, hangover and minimum-duration
semantics, noise-floor adaptation, errors, streaming == batch, and an F1 floor on a fixed
slice of the labelled corpus."""

from __future__ import annotations

import itertools
import pathlib

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import voxwire
from voxwire import SpeechEnd, SpeechStart, Vad
from voxwire.benchmarks import corpus

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
F1_FLOOR = 0.90  # measured 0.937 when set; a drop below 0.90 is a regression


def noise(n: int, rms: float, seed: int) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).standard_normal(n) * rms


def voiced(n: int, amp: float, rate: int = RATE, f0: float = 180.0) -> npt.NDArray[np.float64]:
    """A harmonic tone (f0 and its harmonics up to 3.5 kHz, falling 6 dB/octave)."""
    t = np.arange(n) / rate
    out = np.zeros(n)
    h = 1
    while f0 * h <= 3500:
        out += np.sin(2 * np.pi * f0 * h * t) / h
        h += 1
    return amp * out / np.sqrt(np.mean(out**2))


def pcm(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def burst_clip(
    rate: int, bursts: list[tuple[float, float]], total_s: float, snr_db: float = 30.0
) -> npt.NDArray[np.int16]:
    n = int(total_s * rate)
    x = noise(n, 30.0, 1)
    amp = 30.0 * 10 ** (snr_db / 20)
    for a, b in bursts:
        i, j = int(a * rate), int(b * rate)
        x[i:j] += voiced(j - i, amp, rate)
    return pcm(x)


def events_of(vad: Vad, audio: npt.NDArray[np.int16]) -> list[SpeechStart | SpeechEnd]:
    out = []
    f = vad.frame_samples
    for i in range(0, len(audio) - f + 1, f):
        r = vad.process(audio[i : i + f])
        if r.event is not None:
            out.append(r.event)
    return out


# --- onsets, offsets, hangover, minimum duration --------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_tone_burst_onset_and_offset_are_frame_exact(rate: int, frame_ms: int) -> None:
    # Bursts on frame boundaries: 0.6-1.2 s and 2.4-3.0 s (multiples of 30 ms and 20 ms).
    audio = burst_clip(rate, [(0.6, 1.2), (2.4, 3.0)], 4.2)
    vad = Vad(rate, frame_ms, sensitivity=0.3)  # timing, not sensitivity, is under test here
    ev = events_of(vad, audio)
    assert [type(e) for e in ev] == [SpeechStart, SpeechEnd, SpeechStart, SpeechEnd]
    assert [e.time for e in ev] == pytest.approx([0.6, 1.2, 2.4, 3.0])
    assert [e.sample for e in ev] == [round(t * rate) for t in (0.6, 1.2, 2.4, 3.0)]
    f = vad.frame_samples
    # Onsets are decided once 20 ms of the burst are in (min_speech_ms), ends 200 ms
    # (hangover) after its last frame.
    assert ev[0].frame == ev[0].sample // f + round(20 / frame_ms) - 1
    assert ev[1].frame == ev[1].sample // f + round(200 / frame_ms) - 1


def test_hangover_bridges_short_gaps_and_delays_the_end() -> None:
    # Gap of 160 ms < 200 ms hangover: one utterance; gap of 400 ms: two.
    audio = burst_clip(RATE, [(1.0, 1.6), (1.76, 2.2), (2.6, 3.0)], 4.0)
    ev = events_of(Vad(RATE), audio)
    assert [(type(e).__name__, e.time) for e in ev] == [
        ("SpeechStart", pytest.approx(1.0)),
        ("SpeechEnd", pytest.approx(2.2)),
        ("SpeechStart", pytest.approx(2.6)),
        ("SpeechEnd", pytest.approx(3.0)),
    ]
    # With no hangover the 160 ms gap splits the first utterance.
    assert len(events_of(Vad(RATE, hangover_ms=0), audio)) == 6
    # The end event arrives hangover_ms after the end of speech.
    for hang in (0, 100, 500):
        end = [e for e in events_of(Vad(RATE, hangover_ms=hang), audio) if isinstance(e, SpeechEnd)]
        assert end[-1].time == pytest.approx(3.0)
        assert end[-1].frame == 149 + max(hang // 20, 1)


def test_minimum_speech_duration_drops_short_bursts_and_keeps_the_onset_time() -> None:
    audio = burst_clip(RATE, [(0.6, 0.68), (1.2, 1.8)], 2.6)  # 80 ms blip, then 600 ms
    assert len(events_of(Vad(RATE), audio)) == 4
    ev = events_of(Vad(RATE, min_speech_ms=100), audio)
    assert [type(e) for e in ev] == [SpeechStart, SpeechEnd]
    start = ev[0]
    assert start.time == pytest.approx(1.2)  # timestamp of the first speech frame...
    assert start.frame == 60 + 4  # ...decided on the fifth


def test_speech_clip_onset_and_offset() -> None:
    if not corpus.espeak_available():
        pytest.skip(
            "espeak-ng speech needs the espeakng-loader wheel (pip install espeakng-loader)"
        )
    c = corpus.build(seed=11, clips=1, clip_s=8.0)
    clip = corpus.mix(c, 0, "white", 20, 16000)
    vad = Vad(16000)
    batch = vad.process_batch(clip.audio[: len(clip.audio) // FRAME * FRAME])
    starts = [e for e in batch.events if isinstance(e, SpeechStart)]
    assert len(starts) >= len(clip.utterances)
    ends = [e for e in batch.events if isinstance(e, SpeechEnd)]
    for k, (u0, u1) in enumerate(clip.utterances):
        t0, t1 = u0 * 0.01, u1 * 0.01
        # Each utterance is entered within 60 ms of its labelled start...
        near = [e for e in starts if t0 - 0.1 <= e.time <= t0 + 0.06]
        assert near, (t0, [e.time for e in starts])
        # ...and left between its labelled end and the next one's start.
        if k + 1 < len(clip.utterances):
            nxt = clip.utterances[k + 1][0] * 0.01
            assert any(t1 - 0.1 <= e.time <= nxt for e in ends), (t1, [e.time for e in ends])


# --- noise floor ----------------------------------------------------------------------------


def test_noise_floor_tracks_rising_noise_within_about_a_second() -> None:
    quiet = noise(2 * RATE, 30.0, 2)
    loud = noise(3 * RATE, 300.0, 3)  # +20 dB
    vad = Vad(RATE)
    frames = pcm(np.concatenate([quiet, loud])).reshape(-1, FRAME)
    floors, speech = [], []
    for f in frames:
        speech.append(vad.process(f).speech)
        floors.append(vad.noise_floor_db)
    assert floors[-1] - floors[99] == pytest.approx(20.0, abs=1.5)
    settle = 100 + 55  # 1.1 s after the step
    assert floors[settle] == pytest.approx(floors[-1], abs=1.5)
    assert not any(speech[settle:])


def test_noise_floor_does_not_climb_onto_steady_speech() -> None:
    # 1 s of noise, then 3 s of speech-like audio with syllable-rate energy dips.
    n = 3 * RATE
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * np.arange(n) / RATE)
    x = np.concatenate([noise(RATE, 30.0, 4), noise(n, 30.0, 5) + voiced(n, 1500.0) * env])
    b = Vad(RATE).process_batch(pcm(x))
    assert b.speech[55:].mean() > 0.85
    assert b.speech[-50:].mean() > 0.8  # still speech after 3 s


def test_white_noise_alone_is_rarely_speech() -> None:
    for rate, frame_ms in [(8000, 20), (16000, 10), (16000, 20), (48000, 30)]:
        x = pcm(noise(rate * 20, 300.0, rate + frame_ms))
        vad = Vad(rate, frame_ms)
        b = vad.process_batch(x[: len(x) // vad.frame_samples * vad.frame_samples])
        assert b.speech.mean() < 0.02
        assert sum(isinstance(e, SpeechStart) for e in b.events) <= 2


# --- API, errors, streaming -----------------------------------------------------------------


def test_defaults_and_properties() -> None:
    vad = Vad(8000)
    assert (vad.rate, vad.frame_ms, vad.frame_samples, vad.latency) == (8000, 20, 160, 0.0)
    assert vad.noise_floor_db == float("-inf")
    r = vad.process(np.zeros(160, np.int16))
    assert isinstance(r, voxwire.VadFrame)
    assert (r.speech, r.active, r.event) == (False, False, None)
    assert 0.0 <= r.score <= 1.0
    assert vad.frames == 1
    vad.reset()
    assert vad.frames == 0
    assert "Vad(rate=8000" in repr(vad)


def test_bytes_frames_are_accepted() -> None:
    audio = burst_clip(8000, [(0.2, 0.6)], 1.0)
    a, b = Vad(8000), Vad(8000)
    for i in range(0, len(audio), 160):
        fa = a.process(audio[i : i + 160])
        fb = b.process(audio[i : i + 160].tobytes())
        assert fa == fb


@pytest.mark.parametrize("rate", [0, 11025, 22050, 44100, 96000])
def test_bad_rate(rate: int) -> None:
    with pytest.raises(ValueError, match=r"rate must be one of 8000, 16000.*got " + str(rate)):
        Vad(rate)


@pytest.mark.parametrize("frame_ms", [0, 5, 15, 32])
def test_bad_frame_ms(frame_ms: int) -> None:
    with pytest.raises(ValueError, match=f"frame_ms must be one of 10, 20, 30, got {frame_ms}"):
        Vad(16000, frame_ms)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hangover_ms": 600}, "hangover_ms must be in"),
        ({"hangover_ms": -1}, "hangover_ms must be in"),
        ({"min_speech_ms": 2000}, "min_speech_ms must be in"),
        ({"sensitivity": 1.5}, "sensitivity must be in"),
        ({"stop_threshold": 0.9}, "stop_threshold must be in"),
        ({"start_threshold": 0.0}, "start_threshold must be in"),
    ],
)
def test_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Vad(16000, **kwargs)  # type: ignore[arg-type]


def test_bad_frames() -> None:
    vad = Vad(16000)
    with pytest.raises(ValueError, match=r"a frame must have 320 samples .* got 160"):
        vad.process(np.zeros(160, np.int16))
    with pytest.raises(TypeError, match="int16"):
        vad.process(np.zeros(320, np.float32))
    with pytest.raises(TypeError, match="int16"):
        vad.process(np.zeros(320, np.int32))
    with pytest.raises(ValueError, match="even number of bytes"):
        vad.process(b"\0" * 641)
    with pytest.raises(TypeError, match="bytes-like"):
        vad.process("not audio")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple of the frame length 320"):
        vad.process_batch(np.zeros(500, np.int16))
    with pytest.raises(TypeError):
        Vad(16000.0)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 48000), max_size=12))
def test_feed_in_any_chunking_equals_batch(cuts: list[int]) -> None:
    audio = burst_clip(RATE, [(0.5, 1.2), (1.5, 2.0), (2.1, 2.5)], 3.0)
    whole = Vad(RATE).process_batch(audio).events
    vad = Vad(RATE)
    got: list[SpeechStart | SpeechEnd] = []
    edges = [0, *sorted(cuts), len(audio)]
    for a, b in itertools.pairwise(edges):
        got += vad.feed(audio[a:b])
    assert tuple(got) == whole
    assert vad.frames == len(audio) // FRAME


def test_batch_equals_streaming_across_calls() -> None:
    audio = burst_clip(8000, [(0.3, 0.9), (1.3, 1.5)], 2.0)
    ref = Vad(8000, 10)
    frames = [ref.process(audio[i : i + 80]) for i in range(0, len(audio), 80)]
    vad = Vad(8000, 10)
    half = len(audio) // 2 // 80 * 80
    b1, b2 = vad.process_batch(audio[:half]), vad.process_batch(audio[half:])
    scores = np.concatenate([b1.scores, b2.scores])
    np.testing.assert_array_equal(scores, np.array([f.score for f in frames], np.float32))
    assert b1.events + b2.events == tuple(f.event for f in frames if f.event is not None)
    np.testing.assert_array_equal(
        np.concatenate([b1.active, b2.active]), [f.active for f in frames]
    )


def test_bench_end_delay_and_held_utterances() -> None:
    from voxwire.benchmarks import vad as bench_vad

    # 3 s on the 10 ms label grid: utterances at 0.5-1.0, 1.3-1.8 and 2.5-2.8 s.
    labels = np.zeros(300, dtype=bool)
    utterances = np.array([(50, 100), (130, 180), (250, 280)], dtype=np.int64)
    for a, b in utterances:
        labels[a:b] = True
    active = np.zeros(150, dtype=bool)  # 20 ms frames
    active[25:60] = True  # ends in frame 60, known at 1.22 s: 0.22 s after the first
    active[65:130] = True  # held from the second into the third; ends 0.18 s before its end
    s = bench_vad.score(labels, utterances, bench_vad.Detection(0.02, active, active))
    assert (s.utterances, s.missed, s.held) == (3, 0, 1)
    np.testing.assert_allclose(s.end_delays, [0.22, -0.18], atol=1e-9)
    assert s.end_delay_ms == pytest.approx((20.0, 200.0))
    # A detection still open at the clip's end is held too.
    active[130:] = True
    s = bench_vad.score(labels, utterances, bench_vad.Detection(0.02, active, active))
    assert (s.held, len(s.end_delays)) == (2, 1)


# --- a fixed corpus slice with an F1 floor --------------------------------------------------


def test_corpus_slice_f1_floor() -> None:
    if not corpus.espeak_available():
        pytest.skip("the VAD corpus needs the espeakng-loader wheel (pip install espeakng-loader)")
    from voxwire.benchmarks import vad as bench_vad

    c = corpus.build(seed=3, clips=1, clip_s=20.0)
    total = bench_vad.Scores()
    for noise_kind, snr, rate in [
        ("white", 10, 16000),
        ("pink", 5, 16000),
        ("hum+clicks", 10, 8000),
        ("brown", 5, 8000),
    ]:
        clip = corpus.mix(c, 0, noise_kind, snr, rate)
        total.add(
            bench_vad.score(
                clip.labels, clip.utterances, bench_vad.detect_voxwire(clip.audio, clip.rate)
            )
        )
    assert total.f1 >= F1_FLOOR, total.f1
    assert total.missed == 0


def test_corpus_is_reproducible_from_its_seed(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not corpus.espeak_available():
        pytest.skip("the VAD corpus needs the espeakng-loader wheel (pip install espeakng-loader)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a"))
    a = corpus.build(seed=5, clips=1, clip_s=4.0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    b = corpus.build(seed=5, clips=1, clip_s=4.0)  # built again, not read from a's cache
    cached = corpus.build(seed=5, clips=1, clip_s=4.0)  # read back from b's cache
    for c in (b, cached):
        np.testing.assert_array_equal(a.clips[0].audio, c.clips[0].audio)
        np.testing.assert_array_equal(a.clips[0].labels, c.clips[0].labels)
    x = corpus.mix(a, 0, "babble", 5, 8000)
    y = corpus.mix(b, 0, "babble", 5, 8000)
    np.testing.assert_array_equal(x.audio, y.audio)
    assert x.rate == 8000
    assert len(x.audio) == len(a.clips[0].audio) // 2


def test_segmenter_on_foreign_decisions() -> None:
    # The segmenter the benchmark applies to other detectors' decisions: start after 2
    # speech frames (timestamped at the first), end after 3 silent frames.
    seg = voxwire._core.VadSegmenter(160, 2, 3)
    speech = np.array([0, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0], dtype=np.uint8)
    flags, at = seg.run(speech)
    starts = np.flatnonzero(flags & voxwire._core.VAD_START)
    ends = np.flatnonzero(flags & voxwire._core.VAD_END)
    assert starts.tolist() == [4]
    assert at[4] == 3 * 160
    assert ends.tolist() == [11]
    assert at[11] == 9 * 160
    active = (flags & voxwire._core.VAD_ACTIVE).astype(bool)
    assert active.tolist() == [False] * 4 + [True] * 7 + [False] * 2


def test_process_frames_a_message_at_a_time_equals_one_batch() -> None:
    audio = burst_clip(RATE, [(0.5, 1.2), (1.5, 2.0), (2.1, 2.5)], 3.0)
    whole = Vad(RATE).process_batch(audio)
    vad = Vad(RATE)
    speech: list[bool] = []
    events: list[SpeechStart | SpeechEnd] = []
    step = 2 * FRAME  # two frames a call, as a live stream gives them
    for at in range(0, len(audio) - len(audio) % step, step):
        flags, found = vad.process_frames(np.ascontiguousarray(audio[at : at + step]))
        speech += flags
        events += found
    n = len(speech)
    assert n == len(audio) // step * 2
    assert speech == whole.speech[:n].tolist()
    assert tuple(events) == tuple(e for e in whole.events if e.frame < n)
    assert events  # the clip has utterances: the comparison is not of empty lists
    with pytest.raises(TypeError, match="process_frames"):
        vad.process_frames(np.zeros(FRAME, np.float32))  # type: ignore[arg-type]


def test_tune_and_heldout_splits_share_no_voice_and_no_noise() -> None:
    tune, held = corpus.SPLITS["tune"], corpus.SPLITS["heldout"]
    assert not set(tune.languages) & set(held.languages)
    assert not set(tune.variants) & set(held.variants)
    assert not set(tune.noises) & set(held.noises)
    everything = corpus.SPLITS["all"]
    assert set(tune.languages) | set(held.languages) == set(everything.languages)
    assert set(tune.variants) | set(held.variants) == set(everything.variants)
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.build(seed=5, clips=1, clip_s=4.0, split="train")


def test_heldout_noises_are_mixed_at_their_snr_and_reproducible() -> None:
    if not corpus.espeak_available():
        pytest.skip("the VAD corpus needs the espeakng-loader wheel (pip install espeakng-loader)")
    held = corpus.build(seed=5, clips=1, clip_s=4.0, split="heldout")
    tune = corpus.build(seed=5, clips=1, clip_s=4.0, split="tune")
    assert held.split == "heldout"
    # Other voices speak: the same seed gives other audio.
    assert not np.array_equal(held.clips[0].audio[:16000], tune.clips[0].audio[:16000])
    clean = held.clips[0].audio.astype(np.float64)
    blocks = clean[: len(clean) // 160 * 160].reshape(-1, 160)
    speech_power = float(np.mean(blocks[held.clips[0].labels[: len(blocks)]] ** 2))
    for kind in corpus.SPLITS["heldout"].noises:
        x = corpus.mix(held, 0, kind, 10, 16000)
        n = x.audio.astype(np.float64) - clean
        assert 10 * np.log10(speech_power / np.mean(n**2)) == pytest.approx(10.0, abs=0.2), kind
        np.testing.assert_array_equal(x.audio, corpus.mix(held, 0, kind, 10, 16000).audio)
    conditions = [
        c for c, _ in corpus.iter_conditions(seed=5, clips=1, clip_s=4.0, split="heldout")
    ]
    assert {c.noise for c in conditions} == set(corpus.SPLITS["heldout"].noises)
    assert len(conditions) == 4 * len(corpus.SNRS_DB) * len(corpus.RATES)
    with pytest.raises(ValueError, match="unknown noise"):
        corpus.mix(held, 0, "rain", 10, 16000)
