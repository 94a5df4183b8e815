"""The AGC benchmark's figures: calls are built as described and the level, spread, pause
SNR and clipping figures measure what they say, on a short call."""

from __future__ import annotations

import numpy as np
import pytest

from voxwire.benchmarks import agc as bench
from voxwire.benchmarks import corpus

pytestmark = pytest.mark.skipif(
    not corpus.espeak_available(), reason="needs espeak-ng: pip install espeakng-loader"
)


@pytest.fixture(scope="module")
def call() -> bench.Call:
    return bench.build_call("steps", 15.0, np.random.default_rng(1))


def test_a_call_has_its_utterances_in_order_with_noise_between(call: bench.Call) -> None:
    assert len(call.audio) >= 15 * bench.RATE
    assert len(call.utterances) == len(call.pauses) == len(call.texts) >= 3
    for (a, b), (c, d) in zip(call.utterances, call.pauses, strict=True):
        assert a < b == c < d <= len(call.audio)
        assert np.all(call.clean[c:d] == 0)
    noise = call.audio[call.pauses[0][0] : call.pauses[0][1]].astype(np.float64)
    assert 10 * np.log10(np.mean(noise**2) / 32768**2) == pytest.approx(bench.NOISE_DBFS, abs=1)


def test_level_figures_follow_a_known_gain(call: bench.Call) -> None:
    base = bench.score_levels(call, call.audio)
    assert base.snr_change_db == 0.0
    assert base.clipped == 0
    quieter = bench.score_levels(call, bench._fixed(-6.0)(call.audio))
    assert quieter.median_dbfs == pytest.approx(base.median_dbfs - 6.0, abs=0.1)
    assert quieter.spread_db == pytest.approx(base.spread_db, abs=0.1)
    assert quieter.snr_change_db == pytest.approx(0.0, abs=0.5)
    # A gain that saturates is counted as clipping.
    assert bench.score_levels(call, bench._fixed(40.0)(call.audio)).clipped > 0


def test_voxwire_narrows_the_spread_without_lifting_pause_noise(call: bench.Call) -> None:
    meths, _notes = bench.methods(call)
    out = meths["voxwire Agc"](call.audio)
    assert out.shape == call.audio.shape
    s = bench.score_levels(call, out)
    base = bench.score_levels(call, call.audio)
    assert s.spread_db < base.spread_db
    assert s.clipped == 0
    assert s.snr_change_db > -3.0
    assert s.median_dbfs == pytest.approx(bench.TARGET_DBFS, abs=4.0)


def test_drift_calls_glide_and_bad_kinds_are_refused() -> None:
    rng = np.random.default_rng(2)
    drift = bench.build_call("drift", 8.0, rng)
    assert len(drift.utterances) >= 2
    with pytest.raises(ValueError, match="kind"):
        bench.build_call("ramp", 5.0, rng)
