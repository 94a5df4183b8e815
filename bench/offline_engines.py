"""The offline speech engines measured: PocketSphinx accuracy and speed, espeak-ng speed.

Run::

    PYTHONPATH=python python bench/offline_engines.py            # all tables
    PYTHONPATH=python python bench/offline_engines.py --quick    # 6 phrases, 1 voice

Caller phrases of a small-business demo (opening hours, address, prices, bookings with a
day, a time and a name, yes / no, goodbye) are spoken by espeak-ng voices through
:class:`~voxwire.services.tts_espeak.EspeakTts` and recognised by
:class:`~voxwire.services.stt_pocketsphinx.PocketSphinxStt`, streamed in 20 ms pushes
and closed by ``finalize()``, heard either clean (22.05 kHz resampled to 16 kHz) or
through the telephone path (22.05 kHz to 8 kHz, G.711 mu-law encode and decode, then
8 kHz to 16 kHz with :class:`voxwire.Resampler`). Word accuracy is 1 - WER over all
phrases (word-level edit distance against the text spoken, summed over phrases).

A second table decodes the telephone audio whole (no streaming, no endpointer) two ways:
upsampled to 16 kHz into the shipped wideband model, or at 8 kHz with the front end set
for telephone band (``samprate=8000, nfft=256, upperf=3500``), which is how the choice
of :attr:`PocketSphinxStt.sample_rate` was made.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

import voxwire
from voxwire.resample import resample
from voxwire.services.stt_pocketsphinx import PocketSphinxStt
from voxwire.services.tts_espeak import EspeakTts
from voxwire.sim.speech import word_errors

PCM = npt.NDArray[np.int16]
# Real-time factors are CPU seconds of the process (all threads) per second of audio, so a
# busy machine changes them little; the latencies are wall-clock times.

PHRASES = (
    "what time do you open on saturday",
    "are you open on sunday",
    "what are your opening hours",
    "when do you close today",
    "what is your address",
    "where are you located",
    "how much does a haircut cost",
    "what is the price of a full service",
    "i would like to book an appointment",
    "can i book a table for two on friday at seven",
    "i need an appointment on tuesday at three in the afternoon",
    "could i come in tomorrow morning at ten",
    "my name is john smith",
    "the booking is for sarah johnson",
    "can you move my appointment to thursday",
    "yes please",
    "no thank you",
    "yes that is right",
    "no that is wrong",
    "thank you goodbye",
)
VOICES = ("en-us", "en-us+m3", "en-us+f2")

# The bias corpus for ``PocketSphinxStt(phrases=...)``: what a developer of the demo would
# list, written as templates over days, times and names. It shares the domain's words
# with PHRASES, and the short answers ("yes please", "no thank you"), not the questions
# and bookings (the run prints which test phrases it holds verbatim).
_DAYS = (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today",
    "tomorrow",
)  # fmt: skip
_TIMES = (
    "at nine", "at ten", "at eleven", "at noon", "at one", "at two", "at three", "at four",
    "at five", "at six", "at seven", "at eight", "in the morning", "in the afternoon",
    "in the evening", "at half past two", "at three thirty",
)  # fmt: skip
_FIRST = (
    "john", "sarah", "michael", "emma", "david", "laura", "james", "anna", "peter", "maria",
    "tom", "lucy",
)  # fmt: skip
_LAST = (
    "smith", "johnson", "brown", "williams", "jones", "miller", "davis", "wilson", "taylor",
    "clark",
)  # fmt: skip
_SERVICES = ("haircut", "full service", "colour", "cut and dry")
_TEMPLATES = (
    "when are you open", "what are your hours", "are you open on {d}",
    "what time do you close on {d}", "what time do you open {d}", "where is your shop",
    "what is the address", "where can i find you", "how much is a haircut",
    "how much does it cost", "what are your prices", "what is the price for a {s}",
    "i want to book an appointment", "i would like to make a booking", "can i book {d} {t}",
    "can i come in on {d} {t}", "i need an appointment for {d} {t}",
    "book me in for {d} {t} please", "a table for {n} on {d} {t}", "my name is {f} {l}",
    "it is {f} {l}", "the name is {f} {l}", "please move my booking to {d}",
    "can you change my appointment to {d} {t}", "yes", "yes please", "yes that is correct",
    "that is right", "no", "no thanks", "no thank you", "that is wrong", "thanks",
    "thank you", "goodbye", "bye",
)  # fmt: skip


def domain_phrases(seed: int = 1) -> list[str]:
    """The bias corpus: each template filled six times from a seeded generator."""
    rng = random.Random(seed)
    return [
        template.format(
            d=rng.choice(_DAYS),
            t=rng.choice(_TIMES),
            f=rng.choice(_FIRST),
            l=rng.choice(_LAST),
            s=rng.choice(_SERVICES),
            n=rng.choice(("two", "three", "four", "five", "six")),
        )
        for template in _TEMPLATES
        for _ in range(6 if "{" in template else 1)
    ]


PUSH = 320  # 20 ms at 16 kHz


@dataclass
class Score:
    errors: int = 0
    words: int = 0
    audio_s: float = 0.0
    cpu_s: float = 0.0
    examples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, ref: str, hyp: str) -> None:
        self.errors += word_errors(ref.split(), hyp.split())
        self.words += len(ref.split())
        if len(self.examples) < 4 and ref != hyp:
            self.examples.append((ref, hyp))

    @property
    def accuracy(self) -> float:
        return 1.0 - self.errors / max(1, self.words)


async def speak(tts: EspeakTts, text: str) -> tuple[PCM, float, float, float]:
    """(audio, seconds to the first chunk, seconds to the first sounding chunk, CPU
    seconds of the process for the whole sentence)."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    first = first_sound = 0.0
    chunks: list[PCM] = []
    async with tts.stream() as s:
        s.push(text)
        s.end_input()
        async for chunk in s:
            now = time.perf_counter() - t0
            if not chunks:
                first = now
            if not first_sound and len(chunk.pcm) and np.abs(chunk.pcm).max() > 256:
                first_sound = now
            chunks.append(chunk.pcm)
    return np.concatenate(chunks), first, first_sound, time.process_time() - c0


def telephone(pcm22: PCM) -> PCM:
    """22.05 kHz -> 8 kHz -> G.711 mu-law -> 8 kHz -> 16 kHz (streaming resampler)."""
    line = voxwire.decode_ulaw(voxwire.encode_ulaw(resample(pcm22, 22050, 8000)))
    up = voxwire.Resampler(8000, 16000)
    return np.concatenate([up.process(line), up.flush()])


def pad(pcm: PCM, rate: int) -> PCM:
    gap = np.zeros(rate // 4, dtype=np.int16)
    return np.concatenate([gap, pcm, gap])


async def recognise(stt: PocketSphinxStt, pcm: PCM) -> tuple[str, float]:
    """The final text of ``pcm`` streamed in 20 ms pushes, and the process CPU seconds
    it took (all threads: the decoder runs in the stream's worker)."""
    texts: list[str] = []
    c0 = time.process_time()
    async with stt.stream() as s:
        for i in range(0, len(pcm), PUSH):
            s.push(pcm[i : i + PUSH])
        s.finalize()
        s.end_input()
        texts = [t.text async for t in s if t.final and t.text]
    return " ".join(texts), time.process_time() - c0


def whole_decoder(rate: int) -> object:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")
    if rate == 8000:
        # The model's feat.params overrides constructor options; the front end is set
        # after loading instead.
        config = decoder.config
        config["samprate"] = 8000
        config["nfft"] = 256
        config["upperf"] = 3500.0
        decoder.reinit_feat(config)
    return decoder


def decode_whole(decoder: object, pcm: PCM) -> str:
    d: object = decoder
    d.start_utt()  # type: ignore[attr-defined]
    d.process_raw(pcm.tobytes(), False, True)  # type: ignore[attr-defined]
    d.end_utt()  # type: ignore[attr-defined]
    hyp = d.hyp()  # type: ignore[attr-defined]
    return " ".join(w for w in (hyp.hypstr if hyp else "").split() if not w.startswith("<"))


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 phrases, one voice")
    args = parser.parse_args(argv)
    phrases = PHRASES[:: len(PHRASES) // 6][:6] if args.quick else PHRASES
    voices = VOICES[:1] if args.quick else VOICES

    stt = PocketSphinxStt()
    t0 = time.perf_counter()
    stt.warm_up()
    load_s = time.perf_counter() - t0
    corpus = domain_phrases()
    verbatim = sorted(set(corpus) & set(phrases))
    t0 = time.perf_counter()
    biased = PocketSphinxStt(phrases=corpus)
    biased.warm_up()
    load_biased_s = time.perf_counter() - t0
    whole = {16000: whole_decoder(16000), 8000: whole_decoder(8000)}

    streamed = {
        "clean 16 kHz": Score(),
        "telephone (G.711) -> 16 kHz": Score(),
        "clean, phrases bias": Score(),
        "telephone, phrases bias": Score(),
    }
    batch = {"telephone, upsampled to 16 kHz": Score(), "telephone, 8 kHz front end": Score()}
    tts_rtf: list[float] = []
    first_chunk: list[float] = []
    first_sound: list[float] = []
    for voice in voices:
        tts = EspeakTts(voice=voice)
        for text in phrases:
            pcm22, first, sound, total = await speak(tts, text)
            tts_rtf.append(total / (len(pcm22) / 22050))
            first_chunk.append(first)
            first_sound.append(sound)
            clean = pad(resample(pcm22, 22050, 16000), 16000)
            line16 = pad(telephone(pcm22), 16000)
            line8 = pad(
                voxwire.decode_ulaw(voxwire.encode_ulaw(resample(pcm22, 22050, 8000))), 8000
            )
            for name, engine, audio in (
                ("clean 16 kHz", stt, clean),
                ("telephone (G.711) -> 16 kHz", stt, line16),
                ("clean, phrases bias", biased, clean),
                ("telephone, phrases bias", biased, line16),
            ):
                hyp, wall = await recognise(engine, audio)
                score = streamed[name]
                score.add(text, hyp)
                score.audio_s += len(audio) / 16000
                score.cpu_s += wall
            for name, audio, rate in (
                ("telephone, upsampled to 16 kHz", line16, 16000),
                ("telephone, 8 kHz front end", line8, 8000),
            ):
                c1 = time.process_time()
                hyp = decode_whole(whole[rate], audio)
                score = batch[name]
                score.cpu_s += time.process_time() - c1
                score.audio_s += len(audio) / rate
                score.add(text, hyp)

    n = len(phrases) * len(voices)
    print(f"{len(phrases)} phrases x {len(voices)} voices ({', '.join(voices)}) = {n} utterances")
    vocabulary = {w for c in corpus for w in c.split()}
    unseen = sorted({w for p in phrases for w in p.split()} - vocabulary)
    print(f"bias corpus: {len(corpus)} sentences, {len(vocabulary)} words")
    print(f"  test phrases found verbatim in it: {len(verbatim)} ({'; '.join(verbatim)})")
    print(f"  test words missing from it: {len(unseen)} ({' '.join(unseen)})")
    print()
    print("PocketSphinxStt, streamed (20 ms pushes, endpointer on, finalize at the end)")
    print(f"{'condition':32} {'words':>6} {'1 - WER':>8} {'CPU RTF':>8}")
    for name, s in streamed.items():
        print(f"{name:32} {s.words:6d} {s.accuracy:8.3f} {s.cpu_s / s.audio_s:8.3f}")
    print()
    print("pocketsphinx Decoder, whole utterance (the rate choice)")
    print(f"{'condition':32} {'words':>6} {'1 - WER':>8} {'CPU RTF':>8}")
    for name, s in batch.items():
        print(f"{name:32} {s.words:6d} {s.accuracy:8.3f} {s.cpu_s / s.audio_s:8.3f}")
    print()
    print(
        f"decoder load: {load_s:.2f} s default model, {load_biased_s:.2f} s with the phrases"
        " bias (building the model included; once, later streams reuse the decoder)"
    )
    print()
    print("EspeakTts (one sentence per stream, 22050 Hz)")
    print(f"  CPU real-time factor  median {statistics.median(tts_rtf):.4f}")
    print(
        f"  first chunk           median {statistics.median(first_chunk) * 1000:.1f} ms, "
        f"max {max(first_chunk) * 1000:.1f} ms"
    )
    print(
        f"  first sounding chunk  median {statistics.median(first_sound) * 1000:.1f} ms, "
        f"max {max(first_sound) * 1000:.1f} ms"
    )
    print()
    for name in ("telephone (G.711) -> 16 kHz", "telephone, phrases bias"):
        print(f"examples ({name}):")
        for ref, hyp in streamed[name].examples:
            print(f"  said  {ref!r}\n  heard {hyp!r}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
