"""voxwire's VAD against webrtcvad and Silero VAD on the labelled corpus.

Every detector hears the same audio of every condition (:mod:`voxwire.benchmarks.corpus`:
five noises at four SNRs, at 16 kHz and through the 8 kHz mu-law telephone path) in the
same run. Scores:

* **F1**: frame-level, on the 10 ms label grid, ignoring the 20 ms either side of every
  label change; each detector's own frame decisions (voxwire: the per-frame ``speech``
  decision; webrtcvad: ``is_speech``; Silero: probability >= 0.5 per 32 ms chunk).
* **Onset latency**: for each utterance, from its first labelled block to the end of the
  first frame at which the detector is in an utterance (the moment a caller's code could
  know), median and 95th percentile.
* **End delay**: for each utterance the detector found, from its last labelled block to the
  end of the frame in which the detector's utterance that overlaps it last ends (the frame
  of the ``SpeechEnd`` event, when a voice agent learns that the turn is over), median and
  95th percentile, over the utterances whose end comes before the next labelled utterance
  begins. It includes the hangover. **Held**: found utterances whose detected utterance
  instead runs on into the next labelled one (or past the clip's end), so no end comes in
  the pause at all; their delay is at least that pause and is left out of the percentiles.
* **Missed**: utterances during which the detector never enters an utterance.
* **False alarms per minute**: detected utterances that overlap no labelled speech, per
  minute of non-speech.

voxwire's utterances come from its own events (hangover 200 ms by default). The peers'
come from their raw frame decisions and, in a second row, from the same segmenter voxwire
uses (:class:`voxwire._core.VadSegmenter`, same hangover), so the comparison holds with
and without the smoothing.

CPU: voxwire's batch call per frame (C++ only) and the per-frame Python call of both
voxwire and webrtcvad, timed interleaved on fresh frames; Silero's time per 32 ms chunk.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voxwire import _core
from voxwire.benchmarks import corpus as corpus_mod
from voxwire.benchmarks._harness import Impl, Table, environment_note, time_interleaved
from voxwire.vad import Vad

__all__ = [
    "Detection",
    "Scores",
    "detect_voxwire",
    "detectors",
    "evaluate",
    "run",
    "score",
]

_GRID = corpus_mod.BLOCK_S
_IGNORE_CELLS = 2  # 20 ms on each side of a label change
_HANGOVER_MS = 200
_QUICK = {"seed": 0, "clips": 1, "clip_s": 30.0}
_FULL = {"seed": 0, "clips": 6, "clip_s": 30.0}
HELDOUT_SEED = 2
"""The seed of the held-out corpus ``run`` reports on (the detector was tuned on the
``tune`` split, seed 1: other voices, other noises, another seed)."""


@dataclass
class Detection:
    """One detector's output on one clip: frame decisions and utterance state per frame."""

    frame_s: float
    speech: npt.NDArray[np.bool_]
    active: npt.NDArray[np.bool_]


@dataclass
class Scores:
    """Counts accumulated over clips; the derived figures are properties."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    latencies: list[float] = field(default_factory=list)
    end_delays: list[float] = field(default_factory=list)
    held: int = 0
    utterances: int = 0
    missed: int = 0
    false_alarms: int = 0
    nonspeech_s: float = 0.0

    def add(self, other: Scores) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.latencies += other.latencies
        self.end_delays += other.end_delays
        self.held += other.held
        self.utterances += other.utterances
        self.missed += other.missed
        self.false_alarms += other.false_alarms
        self.nonspeech_s += other.nonspeech_s

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    @property
    def latency_ms(self) -> tuple[float, float]:
        return _p50_p95_ms(self.latencies)

    @property
    def end_delay_ms(self) -> tuple[float, float]:
        return _p50_p95_ms(self.end_delays)

    @property
    def fa_per_min(self) -> float:
        return self.false_alarms / (self.nonspeech_s / 60) if self.nonspeech_s else 0.0


def _p50_p95_ms(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return (float("nan"), float("nan"))
    a = np.asarray(seconds) * 1000
    return (float(np.median(a)), float(np.percentile(a, 95)))


def _on_grid(decisions: npt.NDArray[np.bool_], frame_s: float, cells: int) -> npt.NDArray[np.bool_]:
    """Frame decisions sampled at the middle of each 10 ms grid cell."""
    idx = np.floor((np.arange(cells) + 0.5) * _GRID / frame_s).astype(np.int64)
    out = np.zeros(cells, dtype=bool)
    ok = idx < len(decisions)
    out[ok] = decisions[idx[ok]]
    return out


def _runs(x: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """(start, stop) index pairs of the runs of True in x."""
    d = np.diff(np.concatenate([[0], x.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)], axis=1)


def score(
    labels: npt.NDArray[np.bool_], utterances: npt.NDArray[np.int64], det: Detection
) -> Scores:
    """Score one detection of one clip against its labels (see the module docstring)."""
    s = Scores()
    cells = len(labels)
    pred = _on_grid(det.speech, det.frame_s, cells)
    keep = np.ones(cells, dtype=bool)
    for c in np.flatnonzero(np.diff(labels.astype(np.int8))) + 1:
        keep[max(0, c - _IGNORE_CELLS) : c + _IGNORE_CELLS] = False
    lab, prd = labels[keep], pred[keep]
    s.tp = int(np.sum(lab & prd))
    s.fp = int(np.sum(~lab & prd))
    s.fn = int(np.sum(lab & ~prd))

    fs = det.frame_s
    active = det.active
    runs = _runs(active)
    n_utt = len(utterances)
    for j, (u0, u1) in enumerate(utterances):
        t0, t1 = u0 * _GRID, u1 * _GRID
        first = int(np.floor(t0 / fs))
        last = min(len(active), int(np.ceil(t1 / fs)))
        hits = np.flatnonzero(active[first:last])
        s.utterances += 1
        if len(hits) == 0:
            s.missed += 1
        else:
            s.latencies.append((first + int(hits[0]) + 1) * fs - t0)
            # The last detected utterance that overlaps this one: the run holding its last
            # active frame. It ends in the frame after its last active one (the end event's
            # frame), known at that frame's end.
            run = int(np.searchsorted(runs[:, 0], first + int(hits[-1]), side="right")) - 1
            stop = int(runs[run, 1])
            resumed = utterances[j + 1][0] * _GRID if j + 1 < n_utt else len(active) * fs
            if stop >= len(active) or (stop + 1) * fs > resumed:
                s.held += 1
            else:
                s.end_delays.append((stop + 1) * fs - t1)
    speech_cells = np.concatenate([[False], labels, [False]])
    for a, b in runs:
        c0 = int(np.floor(a * fs / _GRID))
        c1 = int(np.ceil(b * fs / _GRID))
        if not speech_cells[1 + c0 : 1 + min(c1, cells)].any():
            s.false_alarms += 1
    s.nonspeech_s = float(np.sum(~labels)) * _GRID
    return s


# ---- detectors -----------------------------------------------------------------------------

Detector = Callable[[npt.NDArray[np.int16], int], Detection]


def detect_voxwire(audio: npt.NDArray[np.int16], rate: int, **kwargs: Any) -> Detection:
    """voxwire's Vad (20 ms frames, ``kwargs`` as for :class:`voxwire.Vad`) on a whole clip."""
    vad = Vad(rate, 20, **kwargs)
    n = len(audio) - len(audio) % vad.frame_samples
    batch = vad.process_batch(audio[:n])
    return Detection(0.02, batch.speech, batch.active)


def _voxwire(**kwargs: Any) -> Detector:
    def detect(audio: npt.NDArray[np.int16], rate: int) -> Detection:
        return detect_voxwire(audio, rate, **kwargs)

    return detect


def _smoothed(speech: npt.NDArray[np.bool_], frame_s: float, rate: int) -> npt.NDArray[np.bool_]:
    hang = round(_HANGOVER_MS / 1000 / frame_s)
    seg = _core.VadSegmenter(round(frame_s * rate), 1, hang)
    flags, _ = seg.run(speech.astype(np.uint8))
    return (flags & _core.VAD_ACTIVE).astype(bool)


def _webrtc(mode: int) -> Detector | None:
    if importlib.util.find_spec("webrtcvad") is None:
        return None
    import webrtcvad  # type: ignore[import-untyped,unused-ignore]

    def detect(audio: npt.NDArray[np.int16], rate: int) -> Detection:
        v = webrtcvad.Vad(mode)
        f = rate // 50
        raw = audio[: len(audio) - len(audio) % f].tobytes()
        step = 2 * f
        speech = np.fromiter(
            (v.is_speech(raw[i : i + step], rate) for i in range(0, len(raw), step)), dtype=bool
        )
        return Detection(0.02, speech, speech)

    return detect


def silero_model_path() -> Path | None:
    """The ONNX model inside the installed silero-vad wheel, without importing the package
    (which needs torch). None if the wheel or onnxruntime is missing."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.submodule_search_locations is None:
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    for base in spec.submodule_search_locations:
        p = Path(base) / "data" / "silero_vad.onnx"
        if p.is_file():
            return p
    return None


class _Silero:
    """Silero VAD v5 run with onnxruntime: 512-sample chunks at 16 kHz (256 at 8 kHz), each
    preceded by the last 64 (32) samples of the previous chunk, recurrent state carried."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.seconds = 0.0
        self.chunks = 0

    def __call__(self, audio: npt.NDArray[np.int16], rate: int) -> Detection:
        chunk = 512 if rate == 16000 else 256
        ctx = chunk // 8
        x = audio.astype(np.float32) / 32768.0
        n = len(x) // chunk
        state = np.zeros((2, 1, 128), dtype=np.float32)
        sr = np.array(rate, dtype=np.int64)
        context = np.zeros(ctx, dtype=np.float32)
        probs = np.empty(n, dtype=np.float32)
        run = self._session.run
        t0 = time.perf_counter()
        for i in range(n):
            piece = x[i * chunk : (i + 1) * chunk]
            inp = np.concatenate([context, piece])[None, :]
            out, state = run(None, {"input": inp, "state": state, "sr": sr})
            probs[i] = out[0, 0]
            context = piece[-ctx:]
        self.seconds += time.perf_counter() - t0
        self.chunks += n
        speech = probs >= 0.5
        return Detection(chunk / rate, speech, speech)


def detectors() -> tuple[dict[str, Detector], list[str], _Silero | None]:
    """The detectors to compare (name -> function), notes on missing peers, and the Silero
    runner (for its timing) when available."""
    out: dict[str, Detector] = {"voxwire": _voxwire()}
    notes: list[str] = []
    for mode in range(4):
        d = _webrtc(mode)
        if d is None:
            notes.append("webrtcvad skipped: pip install webrtcvad-wheels")
            break
        out[f"webrtcvad {mode}"] = d
    silero: _Silero | None = None
    path = silero_model_path()
    if path is None:
        notes.append("Silero skipped: pip install onnxruntime and pip install --no-deps silero-vad")
    else:
        silero = _Silero(path)
        out["silero"] = silero
    return out, notes, silero


def evaluate(
    quick: bool = False,
    only: tuple[str, ...] | None = None,
    split: str = "all",
    seed: int | None = None,
) -> tuple[dict[str, dict[str, Scores]], dict[str, Scores], list[str], _Silero | None]:
    """Run every detector on every condition of the corpus ``split`` (see
    :data:`voxwire.benchmarks.corpus.SPLITS`; ``seed`` replaces the default seed 0).
    Returns per-condition scores (condition -> detector -> Scores), overall scores per
    detector, notes, and Silero."""
    dets, notes, silero = detectors()
    if only is not None:
        dets = {k: v for k, v in dets.items() if k in only}
    smooth_names = [n for n in dets if n != "voxwire"]
    per: dict[str, dict[str, Scores]] = {}
    overall: dict[str, Scores] = {}
    params: dict[str, Any] = dict(_QUICK if quick else _FULL)
    if seed is not None:
        params["seed"] = seed
    for cond, clips in corpus_mod.iter_conditions(**params, split=split):
        row: dict[str, Scores] = {}
        for name, det in dets.items():
            total, total_sm = Scores(), Scores()
            for clip in clips:
                d = det(clip.audio, clip.rate)
                total.add(score(clip.labels, clip.utterances, d))
                if name in smooth_names:
                    sm = Detection(d.frame_s, d.speech, _smoothed(d.speech, d.frame_s, clip.rate))
                    total_sm.add(score(clip.labels, clip.utterances, sm))
            row[name] = total
            if name in smooth_names:
                row[name + " +hang"] = total_sm
        per[cond.name] = row
        for name, s in row.items():
            overall.setdefault(name, Scores()).add(s)
    return per, overall, notes, silero


# ---- CPU -----------------------------------------------------------------------------------


def _cpu(quick: bool, silero: _Silero | None) -> Table:
    rng = np.random.default_rng(7)
    rows: list[list[str]] = []
    notes: list[str] = []
    for rate in (8000, 16000):
        f = rate // 50
        frames = 2000 if quick else 8000
        # Fresh, speech-like input: noise with bursts, different for every frame.
        env = np.repeat(rng.uniform(0.0, 1.0, frames) ** 3 * 8000 + 30, f)
        audio = (rng.standard_normal(frames * f) * env).astype(np.int16)
        vad = Vad(rate, 20)
        best = float("inf")
        for _ in range(5 if quick else 15):
            vad.reset()
            t0 = time.perf_counter_ns()
            vad.process_batch(audio)
            best = min(best, (time.perf_counter_ns() - t0) / frames)
        pool_arr = [audio[i * f : (i + 1) * f] for i in range(frames)]
        pool_bytes = [a.tobytes() for a in pool_arr]
        vx = Vad(rate, 20)
        impls = [Impl("voxwire Vad.process", vx.process)]
        native = vx._native  # the binding alone, without the Python wrapper
        impls.append(Impl("voxwire _core", native.process))
        per_call: dict[str, float] = {}
        times = time_interleaved(impls, pool_arr, batch=200, rounds=20 if quick else 60)
        per_call.update({k: float(np.median(v)) for k, v in times.items()})
        if importlib.util.find_spec("webrtcvad") is not None:
            import webrtcvad

            w = webrtcvad.Vad(3)
            wt = time_interleaved(
                [Impl("webrtcvad is_speech", w.is_speech, (rate,))],
                pool_bytes,
                batch=200,
                rounds=20 if quick else 60,
            )
            per_call.update({k: float(np.median(v)) for k, v in wt.items()})
        ref = per_call.get("webrtcvad is_speech")
        rows.append([f"{rate // 1000} kHz", "voxwire C++ batch", f"{best / 1000:.3f}", "-"])
        for name, ns in per_call.items():
            ratio = f"{ns / ref:.2f}x" if ref else "-"
            rows.append([f"{rate // 1000} kHz", name + " (per call)", f"{ns / 1000:.3f}", ratio])
    if silero is not None and silero.chunks:
        us = silero.seconds / silero.chunks * 1e6
        rows.append(["8+16 kHz", "silero onnxruntime (per 32 ms chunk)", f"{us:.1f}", "-"])
        notes.append("Silero's figure is per 32 ms chunk (1 thread), measured during scoring")
    notes.append("per 20 ms frame; ratio is against webrtcvad is_speech on the same frames")
    notes.append(environment_note())
    return Table(
        "VAD CPU per frame (us)", ["rate", "call", "us/frame", "vs webrtcvad"], rows, notes
    )


# ---- tables --------------------------------------------------------------------------------


def _fmt(s: Scores) -> list[str]:
    med, p95 = s.latency_ms
    end_med, end_p95 = s.end_delay_ms
    return [
        f"{s.f1:.3f}",
        f"{med:.0f}",
        f"{p95:.0f}",
        f"{end_med:.0f}",
        f"{end_p95:.0f}",
        f"{s.held}/{s.utterances - s.missed}",
        f"{s.missed}/{s.utterances}",
        f"{s.fa_per_min:.1f}",
    ]


def run(quick: bool = False, split: str = "heldout", seed: int | None = None) -> list[Table]:
    """Accuracy per condition and overall, and CPU per frame, for every detector available,
    on the corpus ``split`` (by default the held-out one, seed :data:`HELDOUT_SEED`)."""
    if not corpus_mod.espeak_available():
        return [
            Table(
                "VAD accuracy",
                ["detector"],
                [],
                ["skipped: the corpus needs espeak-ng: pip install espeakng-loader"],
            )
        ]
    if seed is None and split == "heldout":
        seed = HELDOUT_SEED
    per, overall, notes, silero = evaluate(quick, split=split, seed=seed)
    cols = [
        "detector",
        "F1",
        "onset p50 ms",
        "onset p95 ms",
        "end p50 ms",
        "end p95 ms",
        "held",
        "missed",
        "FA/min",
        "FA vs w3",
    ]
    ref = overall.get("webrtcvad 3")
    ref_hang = overall.get("webrtcvad 3 +hang")

    def ratio(s: Scores, name: str) -> str:
        r = ref_hang if name.endswith("+hang") else ref
        if r is None or not r.fa_per_min:
            return "-"
        return f"{s.fa_per_min / r.fa_per_min:.2f}x"

    params = dict(_QUICK if quick else _FULL)
    if seed is not None:
        params["seed"] = seed
    tables = [
        Table(
            f"VAD accuracy, all conditions ({split} split)",
            cols,
            [[name, *_fmt(s), ratio(s, name)] for name, s in overall.items()],
            [
                *notes,
                f"corpus: {params}, split={split}, quick={quick}",
                "FA vs w3: false alarms per minute over webrtcvad mode 3's (raw decisions; "
                "+hang rows over webrtcvad 3 +hang); voxwire's utterances come from its own "
                "segmenter",
                "end: from the labelled end of each utterance found to the end of the frame "
                "in which the detector's utterance ends (raw rows: the first non-speech frame), "
                "over those ended before the next labelled utterance; held: found utterances "
                "whose detected utterance runs on into the next one",
            ],
        )
    ]
    tables.append(_end_by_noise(per))
    names = list(overall)
    webrtc = [n for n in names if n.startswith("webrtcvad") and not n.endswith("+hang")]
    rows = []
    for cond, row in per.items():
        best_w = max(webrtc, key=lambda n: row[n].f1) if webrtc else None
        cells = [cond, f"{row['voxwire'].f1:.3f}"]
        cells += [f"{row[best_w].f1:.3f} ({best_w[-1]})" if best_w else "-"]
        cells += [f"{row['silero'].f1:.3f}" if "silero" in row else "-"]
        cells += [f"{row['voxwire'].fa_per_min:.1f}"]
        cells += [f"{row['webrtcvad 3'].fa_per_min:.1f}" if "webrtcvad 3" in row else "-"]
        rows.append(cells)
    tables.append(
        Table(
            "VAD F1 and false alarms per condition",
            [
                "condition",
                "voxwire F1",
                "best webrtcvad F1 (mode)",
                "silero F1",
                "voxwire FA/min",
                "webrtcvad 3 FA/min",
            ],
            rows,
            [
                "FA/min: utterances that overlap no labelled speech, per minute of "
                "non-speech (webrtcvad raw decisions)"
            ],
        )
    )
    tables.append(_cpu(quick, silero))
    return tables


def _end_by_noise(per: dict[str, dict[str, Scores]]) -> Table:
    """End delay p50 / p95 per noise (all SNRs and both rates), for every detector."""
    by_noise: dict[str, dict[str, Scores]] = {}
    for cond, row in per.items():
        noise = cond.split(" ", 1)[0]  # Condition.name: "<noise> <snr> dB @<rate>k"
        for name, s in row.items():
            by_noise.setdefault(noise, {}).setdefault(name, Scores()).add(s)
    names = list(next(iter(per.values()))) if per else []
    rows = []
    for noise, row in by_noise.items():
        cells = [noise]
        for name in names:
            sc = row[name]
            med, p95 = sc.end_delay_ms
            found = sc.utterances - sc.missed
            held = 100 * sc.held / found if found else 0.0
            cells.append(f"{med:.0f} / {p95:.0f} ({held:.0f}%)")
        rows.append(cells)
    return Table(
        "VAD end delay per noise, p50 / p95 ms (held %)",
        ["noise", *names],
        rows,
        [
            "from the labelled end of each utterance found to the end of the frame in which "
            "the detector's utterance ends, over those ended before the next labelled one; "
            "held: share of found utterances whose detected utterance runs on into the next "
            "one; every SNR and both rates of a noise together"
        ],
    )
