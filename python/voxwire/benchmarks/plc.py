"""Packet-loss concealment: voxwire's concealer against what decoders do without one.

A voiced test signal (harmonics of a gliding f0 under a syllable-rate envelope, 8 kHz) loses
20 ms frames at random, isolated or in bursts. For each method the table gives the SNR over
the lost frames against the original (higher is better; silence is 0 dB by definition) and
the time per concealed frame. Baselines: silence insertion, and repeating the last good
frame, the two behaviours of a decoder with no PLC.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from voxwire.benchmarks._harness import Table, environment_note
from voxwire.plc import Concealer

__all__ = ["run"]

RATE = 8000
FRAME = RATE // 50


def voiced(seconds: float, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """A fresh voiced-like signal: 7 harmonics of a gliding f0, amplitude-modulated."""
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = rng.uniform(100, 220) + 25 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(h * phase + rng.uniform(0, 6)) / h for h in range(1, 8))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
    return np.asarray(np.round(4000 * x * envelope), dtype=np.int16)


def losses(n_frames: int, rate: float, burst: int, rng: np.random.Generator) -> set[int]:
    """Frames lost in bursts of `burst`, about `rate` of all frames, never the first 5."""
    lost: set[int] = set()
    for f in range(5, n_frames - burst):
        if rng.random() < rate / burst and not any(g in lost for g in range(f - 1, f + burst)):
            lost.update(range(f, f + burst))
    return lost


def conceal(
    x: npt.NDArray[np.int16], lost: set[int], method: str
) -> tuple[npt.NDArray[np.int16], float]:
    """Play x with the lost frames replaced by `method`; return it and seconds spent."""
    out = x.copy()
    plc = Concealer(RATE)
    last = np.zeros(FRAME, dtype=np.int16)
    spent = 0.0
    for f in range(len(x) // FRAME):
        seg = out[f * FRAME : (f + 1) * FRAME]
        if f in lost:
            t0 = time.perf_counter()
            if method == "voxwire":
                plc.conceal(FRAME, out=seg)
            elif method == "repeat":
                seg[:] = last
            else:
                seg[:] = 0
            spent += time.perf_counter() - t0
        else:
            if method == "voxwire":
                plc.good(seg)
            last = seg.copy()
    return out, spent


def snr_db(x: npt.NDArray[np.int16], y: npt.NDArray[np.int16], lost: set[int]) -> float:
    idx = np.concatenate([np.arange(f * FRAME, (f + 1) * FRAME) for f in sorted(lost)])
    ref = x[idx].astype(np.float64)
    err = ref - y[idx].astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(float(np.sum(err**2)), 1e-9)))


def run(quick: bool = False) -> list[Table]:
    """Conceal random isolated and burst losses on fresh signals; return the table."""
    rng = np.random.default_rng()
    seconds = 10.0 if quick else 60.0
    rows: list[list[str]] = []
    for burst, rate in ((1, 0.05), (1, 0.10), (2, 0.10), (3, 0.20)):
        x = voiced(seconds, rng)
        lost = losses(len(x) // FRAME, rate, burst, rng)
        row = [f"{int(rate * 100)} % in bursts of {burst} ({burst * 20} ms)"]
        costs = []
        for method in ("voxwire", "repeat", "silence"):
            y, spent = conceal(x, lost, method)
            row.append(f"{snr_db(x, y, lost):.1f}")
            costs.append(spent / len(lost) * 1e6)
        row.append(f"{costs[0]:.1f}")
        rows.append(row)
    return [
        Table(
            title="Packet-loss concealment, 8 kHz voiced signal: SNR over the lost frames (dB)",
            columns=["losses", "voxwire PLC", "repeat last frame", "silence", "us/frame (voxwire)"],
            rows=rows,
            notes=[
                "higher is better; silence is 0 dB by definition; a fresh signal and loss "
                "pattern each run",
                environment_note(),
            ],
        )
    ]
