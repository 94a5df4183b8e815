"""How well the audio a caller heard back matches what it said, robust to time-stretching."""

from __future__ import annotations

import numpy as np

from tests.aio.rtp_peers import best_correlation


def windowed_correlation(said: np.ndarray, heard: np.ndarray, rate: int) -> tuple[float, float]:
    """(median windowed, whole) correlation of ``heard`` against ``said``.

    The whole reply's best lag is found first; then each voiced 100 ms window of ``said``
    is matched within 30 ms of that lag, and the median of the windows' best normalised
    correlations is returned. Windowed, because the jitter buffer may lengthen or shorten
    a pitch period or two to follow the network (time-stretching), which shifts the rest
    of the reply by a few ms and lowers a single whole-reply correlation.
    """
    whole, lag = best_correlation(said, heard, max_lag=3 * rate)
    ref, test = said.astype(np.float64), heard.astype(np.float64)
    window, reach = rate // 10, 3 * rate // 100
    scores = []
    for start in range(0, len(ref) - window, window):
        a = ref[start : start + window]
        if np.sqrt(np.mean(a * a)) < 300:
            continue  # a pause between words: nothing to compare
        best = 0.0
        for shift in range(-reach, reach + 1, max(1, rate // 2000)):
            at = start + lag + shift
            if at < 0 or at + window > len(test):
                continue
            b = test[at : at + window]
            denom = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
            if denom:
                best = max(best, float(np.sum(a * b)) / denom)
        scores.append(best)
    return (float(np.median(scores)) if scores else 0.0), whole
