"""Packet-loss concealment: quality against simple baselines, semantics and errors."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from voxwire.plc import Concealer


def voiced(rate: int, seconds: float, seed: int = 0) -> npt.NDArray[np.int16]:
    """Harmonics of a slowly gliding f0 with a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(h * phase + rng.uniform(0, 6)) / h for h in range(1, 8))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    return np.asarray(np.round(4000 * x * envelope), dtype=np.int16)


def run_with_losses(
    x: npt.NDArray[np.int16], rate: int, lost: set[int], how: str
) -> npt.NDArray[np.int16]:
    frame = rate // 50
    plc = Concealer(rate)
    out = x.copy()
    last = np.zeros(frame, dtype=np.int16)
    for f in range(len(x) // frame):
        seg = out[f * frame : (f + 1) * frame]
        if f in lost:
            if how == "plc":
                seg[:] = plc.conceal(frame)
            elif how == "repeat":
                seg[:] = last
            else:
                seg[:] = 0
        else:
            if how == "plc":
                plc.good(seg)
            last = seg.copy()
    return out


def snr_on(
    x: npt.NDArray[np.int16], y: npt.NDArray[np.int16], frames: set[int], frame: int
) -> float:
    idx = np.concatenate([np.arange(f * frame, (f + 1) * frame) for f in sorted(frames)])
    ref = x[idx].astype(np.float64)
    err = ref - y[idx].astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-9)))


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_single_losses_are_concealed_better_than_silence_or_repetition(rate: int) -> None:
    x = voiced(rate, 4.0)
    rng = np.random.default_rng(rate)
    lost = {f for f in range(5, 195) if rng.random() < 0.1 and f % 2 == 0}  # isolated losses
    frame = rate // 50
    results = {
        how: snr_on(x, run_with_losses(x, rate, lost, how), lost, frame)
        for how in ("plc", "repeat", "silence")
    }
    assert results["silence"] == pytest.approx(0.0, abs=1e-9)
    assert results["plc"] > results["repeat"] + 3.0
    assert results["plc"] > 3.0


def test_frames_outside_losses_are_untouched() -> None:
    rate = 8000
    x = voiced(rate, 1.0)
    y = run_with_losses(x, rate, {10, 11, 30}, "plc")
    assert np.array_equal(y[: 10 * 160], x[: 10 * 160])
    # 40 ms lost: a 10 ms cross-fade into frame 12, then the original.
    assert np.array_equal(y[12 * 160 + 80 : 30 * 160], x[12 * 160 + 80 : 30 * 160])
    # 20 ms lost: 4 ms + 4 ms of cross-fade into frame 31.
    assert np.array_equal(y[31 * 160 + 64 :], x[31 * 160 + 64 :])
    assert not np.array_equal(y[31 * 160 + 56 : 31 * 160 + 64], x[31 * 160 + 56 : 31 * 160 + 64])


def test_long_loss_fades_to_exact_silence() -> None:
    plc = Concealer(16000)
    plc.good(voiced(16000, 0.2))
    gap = np.concatenate([plc.conceal(160) for _ in range(8)])  # 80 ms in 10 ms pieces
    assert np.abs(gap[:160]).max() > 1000
    assert not gap[960:].any()
    assert plc.concealed_in_loss == 1280


def test_good_returns_the_same_array_and_conceal_writes_out() -> None:
    plc = Concealer(8000)
    frame = voiced(8000, 0.02)
    assert plc.good(frame) is frame
    out = np.empty(160, dtype=np.int16)
    assert plc.conceal(160, out=out) is out
    assert plc.sample_rate == 8000
    assert 40 <= plc.pitch <= 120
    plc.reset()
    assert plc.pitch == 0
    assert not plc.conceal(50).any()


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"8000\.\.48000, got 96000"):
        Concealer(96000)
    plc = Concealer(8000)
    with pytest.raises(TypeError):
        plc.good(np.zeros(160, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        plc.good(np.zeros(320, dtype=np.int16)[::2])
    frozen = np.zeros(160, dtype=np.int16)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="frame must be writeable"):
        plc.good(frozen)
    with pytest.raises(ValueError, match="samples must be >= 0, got -1"):
        plc.conceal(-1)
    with pytest.raises(ValueError, match="out must hold 160 samples, got 80"):
        plc.conceal(160, out=np.empty(80, dtype=np.int16))
