"""The offline engines, for real: espeak-ng speaks, PocketSphinx listens."""

from __future__ import annotations

import asyncio
import gc
import itertools
import re
import threading

import numpy as np
import pytest

from voxwire.errors import ServiceError
from voxwire.resample import resample
from voxwire.services.base import PCM, SpeechAudio, SpeechToText, TextToSpeech, Transcript

pytest.importorskip("espeakng_loader", reason="espeak-ng needs the espeakng-loader wheel")

from voxwire.services.stt_pocketsphinx import PocketSphinxStt, pocketsphinx_available
from voxwire.services.tts_espeak import EspeakTts
from voxwire.sim.speech import word_errors

RATE = 22050


def words_of(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


async def synthesise(tts: EspeakTts, *texts: str, flush_each: bool = True) -> list[SpeechAudio]:
    async with tts.stream() as s:
        for text in texts:
            s.push(text)
            if flush_each:
                s.flush()
        s.end_input()
        return [chunk async for chunk in s]


def rms(pcm: PCM) -> float:
    x = pcm.astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


# --- text-to-speech ----------------------------------------------------------------------


def test_tts_fits_the_contract() -> None:
    tts = EspeakTts()
    assert isinstance(tts, TextToSpeech)
    assert tts.sample_rate == RATE


def test_tts_word_timings_line_up_with_the_audio() -> None:
    text = "Hello there, how are you? I would like to book an appointment for Tuesday."
    chunks = asyncio.run(synthesise(EspeakTts(), text))
    audio = np.concatenate([c.pcm for c in chunks])
    words = [w for c in chunks for w in c.words]
    assert [w.text for w in words] == words_of(text)
    # Each chunk carries the words whose audio starts inside it.
    at = 0
    for chunk in chunks:
        for w in chunk.words:
            assert at <= round(w.start * RATE) <= at + len(chunk.pcm)
        at += len(chunk.pcm)
    loud = rms(audio)
    for prev, w in itertools.pairwise(words):
        assert prev.start < prev.end <= w.start
    for w in words:
        assert 0.0 <= w.start < w.end <= len(audio) / RATE
        assert rms(audio[round(w.start * RATE) : round(w.end * RATE)]) > 0.4 * loud, w
    # The pause after the comma lies between "there" and "how", outside both words.
    there, how = words[1], words[2]
    assert how.start - there.end > 0.05
    assert rms(audio[round(there.end * RATE) : round(how.start * RATE)]) < 0.05 * loud
    assert chunks[-1].text.strip().endswith("Tuesday.")


def test_tts_times_run_on_across_flushes() -> None:
    chunks = asyncio.run(synthesise(EspeakTts(), "Good morning.", " See you soon"))
    texts = [c.text for c in chunks if c.text]
    assert texts == ["Good morning.", " See you soon"]
    first_len = 0
    for c in chunks:
        first_len += len(c.pcm)
        if c.text == "Good morning.":
            break
    words = [w for c in chunks for w in c.words]
    assert [w.text for w in words] == ["Good", "morning", "See", "you", "soon"]
    assert words[2].start >= first_len / RATE
    total = sum(len(c.pcm) for c in chunks)
    assert words[-1].end <= total / RATE


def test_tts_sentences_start_without_flush() -> None:
    async def main() -> tuple[list[str], list[str]]:
        async with EspeakTts().stream() as s:
            s.push("First sentence here. And the second")
            chunk = await anext(aiter(s))  # the first sentence, before any flush
            heard = [w.text for w in chunk.words]
            s.end_input()
            rest = [w.text async for c in s for w in c.words]
        return heard, rest

    heard, rest = asyncio.run(main())
    assert heard + rest == ["First", "sentence", "here", "And", "the", "second"]


def test_tts_aclose_stops_synthesis() -> None:
    long_sentence = ", ".join(["one more item on the list of things to say"] * 120) + "."

    async def main() -> tuple[int, int, bool]:
        async with EspeakTts().stream() as s:
            s.push(long_sentence)
            s.push(" And another sentence. And one more.")
            s.end_input()
            first = await anext(aiter(s))
            await s.aclose()
            after = [c async for c in s]
            return len(first.pcm), len(after), s.running.is_set()

    got, after, idle = asyncio.run(main())
    assert got > 0
    assert after == 0  # nothing is yielded once closed
    assert idle  # the worker is no longer synthesising this stream
    # The engine is free at once for the next stream.
    chunks = asyncio.run(synthesise(EspeakTts(), "Next."))
    assert [w.text for c in chunks for w in c.words] == ["Next"]


def test_tts_aclose_cuts_the_sentence_short() -> None:
    long_sentence = ", ".join(["one more item on the list of things to say"] * 120) + "."
    full_s = 120 * 2.0  # far more than the sentence would last uncut (it lasts ~4 min)

    async def main() -> float:
        tts = EspeakTts()
        s = tts.stream()
        s.push(long_sentence)
        s.end_input()
        await anext(aiter(s))
        await s.aclose()
        return s.synthesised / RATE

    # What was synthesised before the cut is a small part of the sentence: the callback
    # stops espeak-ng at its next buffer.
    assert asyncio.run(main()) < 0.5 * full_s


def test_tts_concurrent_streams_keep_their_own_audio() -> None:
    text_a = "The quick brown fox jumps over the lazy dog. Then it runs away."
    text_b = "Silence is golden. Nobody hears this one. Not a single word."

    async def main() -> tuple[list[SpeechAudio], list[SpeechAudio], list[SpeechAudio]]:
        loud, quiet = EspeakTts(), EspeakTts(volume=0)
        alone = await synthesise(loud, text_a)
        a, b = await asyncio.gather(
            synthesise(loud, text_a, flush_each=False), synthesise(quiet, text_b)
        )
        return alone, a, b

    alone, a, b = asyncio.run(main())
    pcm_b = np.concatenate([c.pcm for c in b])
    assert len(pcm_b) > RATE  # b spoke (silently) for more than a second
    assert not pcm_b.any()  # and none of a's audio landed in it
    assert [w.text for c in b for w in c.words] == words_of(text_b)
    assert [w.text for c in a for w in c.words] == words_of(text_a)
    n_alone = sum(len(c.pcm) for c in alone)
    n_a = sum(len(c.pcm) for c in a)
    assert abs(n_a - n_alone) < 0.02 * n_alone  # nothing of b's added to a, nothing lost


def test_tts_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no voice"):
        EspeakTts(voice="no-such-voice")
    with pytest.raises(ValueError, match="rate_wpm"):
        EspeakTts(rate_wpm=10)

    async def main() -> None:
        async with EspeakTts().stream() as s:
            with pytest.raises(TypeError):
                s.push(b"bytes")  # type: ignore[arg-type]

    asyncio.run(main())


def test_tts_empty_input_ends_at_once() -> None:
    assert asyncio.run(synthesise(EspeakTts(), "   ")) == []


def test_tts_engine_failure_is_a_service_error() -> None:
    async def main() -> None:
        s = EspeakTts().stream()
        s.voice = "no-such-voice"  # as if the voice vanished after the stream opened
        s.push("Hello.")
        s.end_input()
        async for _ in s:
            pass

    with pytest.raises(ServiceError) as err:
        asyncio.run(main())
    assert (err.value.service, err.value.reason) == ("tts", "voice")


def test_tts_shares_espeak_with_the_simulated_caller() -> None:
    # espeak-ng has one synth callback per process: the simulated caller's voice keeps
    # working after EspeakTts has used the library, and the other way round.
    from voxwire.sim.speech import synthesize

    before = synthesize("Hello there.", 16000)
    chunks = asyncio.run(synthesise(EspeakTts(), "Hello there."))
    after = synthesize("Hello there.", 16000)
    assert [w.text for c in chunks for w in c.words] == ["Hello", "there"]
    assert abs(len(after) - len(before)) < 0.05 * len(before)
    chunks = asyncio.run(synthesise(EspeakTts(), "Hello there."))
    assert [w.text for c in chunks for w in c.words] == ["Hello", "there"]


# --- speech-to-text ----------------------------------------------------------------------

STT_RATE = 16000
needs_pocketsphinx = pytest.mark.skipif(
    not pocketsphinx_available(), reason="speech-to-text needs the pocketsphinx wheel"
)


@pytest.fixture(scope="module")
def stt() -> PocketSphinxStt:
    engine = PocketSphinxStt()
    engine.warm_up()
    return engine


def speech(*texts: str, gap: float = 0.8) -> tuple[PCM, list[tuple[float, float]]]:
    """espeak-ng saying ``texts`` at 16 kHz, ``gap`` seconds of silence around each,
    and where each one's audio lies (seconds)."""

    async def main() -> list[PCM]:
        tts = EspeakTts()
        return [np.concatenate([c.pcm for c in await synthesise(tts, t)]) for t in texts]

    silence = np.zeros(round(gap * STT_RATE), dtype=np.int16)
    parts: list[PCM] = [silence]
    spans: list[tuple[float, float]] = []
    at = len(silence)
    for pcm in asyncio.run(main()):
        pcm16 = resample(pcm, RATE, STT_RATE)
        spans.append((at / STT_RATE, (at + len(pcm16)) / STT_RATE))
        parts += [pcm16, silence]
        at += len(pcm16) + len(silence)
    return np.concatenate(parts), spans


async def recognise(
    engine: PocketSphinxStt, pcm: PCM, *, finalize: bool = True, push: int = 320
) -> list[Transcript]:
    async with engine.stream() as s:
        for i in range(0, len(pcm), push):
            s.push(pcm[i : i + push])
            if i % (push * 10) == 0:
                await asyncio.sleep(0)  # let results flow while audio arrives
        if finalize:
            s.finalize()
        s.end_input()
        return [t async for t in s]


@needs_pocketsphinx
def test_stt_fits_the_contract(stt: PocketSphinxStt) -> None:
    assert isinstance(stt, SpeechToText)
    assert stt.sample_rate == STT_RATE


@needs_pocketsphinx
def test_stt_recognises_espeak_round_trip(stt: PocketSphinxStt) -> None:
    said = ["what is your address", "no thank you"]
    pcm, spans = speech(*said)
    results = asyncio.run(recognise(stt, pcm))
    finals = [t for t in results if t.final and t.text]
    heard = " ".join(t.text for t in finals).split()
    ref = " ".join(said).split()
    # Both phrases are heard exactly here (most others are not, see
    # docs/offline-engines.md); the bound leaves room for other builds of the engine.
    assert 1 - word_errors(ref, heard) / len(ref) >= 0.6, heard
    # The endpointer ended each utterance by itself, in the silence after it.
    assert [t.speech_final for t in finals] == [True, True]
    for t, (lo, hi) in zip(finals, spans, strict=True):
        assert lo - 0.3 <= t.start < t.end <= hi + 0.3
    # The finalize() at the end finds nothing left: an empty final answers it.
    assert results[-1] == Transcript(
        "", final=True, start=results[-1].start, end=results[-1].start, from_finalize=True
    )


@needs_pocketsphinx
def test_stt_word_times_match_the_tts_word_times(stt: PocketSphinxStt) -> None:
    gap = 0.5
    chunks = asyncio.run(synthesise(EspeakTts(), "What is your address?"))
    spoken = [w for c in chunks for w in c.words]
    silence = np.zeros(round(gap * STT_RATE), dtype=np.int16)
    pcm22 = np.concatenate([c.pcm for c in chunks])
    pcm = np.concatenate([silence, resample(pcm22, RATE, STT_RATE), silence])
    final = next(t for t in asyncio.run(recognise(stt, pcm)) if t.final)
    assert [w.text for w in final.words] == [w.text.lower() for w in spoken]
    # Two engines, one clock: each word is heard where it was spoken (to 80 ms).
    for heard, said in zip(final.words, spoken, strict=True):
        assert abs(heard.start - (gap + said.start)) < 0.08, (heard, said)


@needs_pocketsphinx
def test_stt_interim_before_final_and_monotonic_timings(stt: PocketSphinxStt) -> None:
    pcm, _ = speech("what is your address", gap=0.5)
    results = asyncio.run(recognise(stt, pcm))
    first_final = next(i for i, t in enumerate(results) if t.final)
    assert first_final > 0
    assert not any(t.final for t in results[:first_final])
    assert all(t.text for t in results[:first_final])
    for t in results:
        assert 0.0 <= t.start <= t.end <= len(pcm) / STT_RATE + 0.05
        for a, b in itertools.pairwise(t.words):
            assert a.start < a.end <= b.start < b.end
        assert " ".join(w.text for w in t.words) == t.text
    ends = [t.end for t in results if t.final]
    assert ends == sorted(ends)


@needs_pocketsphinx
def test_stt_finalize_makes_speech_final_now() -> None:
    engine = PocketSphinxStt(endpointing=False)
    pcm, _ = speech("what is your address", gap=0.3)
    results = asyncio.run(recognise(engine, pcm))
    finals = [t for t in results if t.final]
    assert len(finals) == 1
    assert finals[0].from_finalize
    assert not finals[0].speech_final
    assert "address" in finals[0].text.split()
    # end_input without finalize() still gives the last words, as a plain final.
    results = asyncio.run(recognise(engine, pcm, finalize=False))
    finals = [t for t in results if t.final]
    assert len(finals) == 1
    assert not finals[0].from_finalize
    assert "address" in finals[0].text.split()


@needs_pocketsphinx
def test_stt_silence_gives_an_empty_final_on_finalize(stt: PocketSphinxStt) -> None:
    results = asyncio.run(recognise(stt, np.zeros(STT_RATE, dtype=np.int16)))
    assert results == [Transcript("", final=True, start=1.0, end=1.0, from_finalize=True)]


@needs_pocketsphinx
def test_stt_phrase_bias_recognises_listed_phrases() -> None:
    phrases = ["what is your address", "yes please", "no thank you", "goodbye"]
    engine = PocketSphinxStt(phrases=[p.capitalize() + "?" for p in phrases])
    pcm, _ = speech("goodbye", "yes please")
    heard = [t.text for t in asyncio.run(recognise(engine, pcm)) if t.final and t.text]
    vocabulary = {w for p in phrases for w in p.split()}
    assert all(set(h.split()) <= vocabulary for h in heard)  # a closed vocabulary
    assert heard == ["goodbye", "yes please"]


@needs_pocketsphinx
def test_stt_rejects_bad_input(stt: PocketSphinxStt) -> None:
    with pytest.raises(ValueError, match="dictionary"):
        PocketSphinxStt(phrases=["xyzzyq plugh"])
    with pytest.raises(TypeError):
        PocketSphinxStt(phrases="one string")
    with pytest.raises(ValueError, match="vad_mode"):
        PocketSphinxStt(vad_mode=7)

    async def main() -> int:
        async with stt.stream() as s:
            with pytest.raises(TypeError):
                s.push(np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="1-D"):
                s.push(np.zeros((2, 10), dtype=np.int16))
            s.end_input()
            s.push(np.zeros(160, dtype=np.int16))  # after end_input: counted, ignored
            assert [t async for t in s] == []
            return s.dropped

    assert asyncio.run(main()) == 160


@needs_pocketsphinx
def test_stt_aclose_ends_the_iteration(stt: PocketSphinxStt) -> None:
    async def main() -> list[Transcript]:
        s = stt.stream()
        s.push(np.zeros(STT_RATE, dtype=np.int16))
        await s.aclose()
        s.push(np.zeros(STT_RATE, dtype=np.int16))  # dropped
        return [t async for t in s]

    assert asyncio.run(main()) == []


@needs_pocketsphinx
def test_stt_dropped_stream_stops_its_worker(stt: PocketSphinxStt) -> None:
    async def main() -> threading.Thread:
        s = stt.stream()
        s.push(np.zeros(STT_RATE, dtype=np.int16))
        worker = s._worker
        del s  # never closed
        gc.collect()
        return worker

    worker = asyncio.run(main())
    worker.join(10.0)
    assert not worker.is_alive()


@needs_pocketsphinx
def test_stt_backlog_overflow_is_a_service_error() -> None:
    engine = PocketSphinxStt(max_backlog=0.5)

    async def main() -> None:
        async with engine.stream() as s:
            for _ in range(100):  # 2 s of audio at once, faster than any decoder
                s.push(np.zeros(320, dtype=np.int16))
            s.end_input()
            async for _ in s:
                pass

    with pytest.raises(ServiceError) as err:
        asyncio.run(main())
    assert (err.value.service, err.value.reason) == ("stt", "overloaded")


def test_a_missing_engine_names_the_extra_that_brings_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # `voxwire demo` prints this message when the demo's engines are not installed.
    import voxwire.services.stt_pocketsphinx as stt_module
    import voxwire.services.tts_espeak as tts_module

    monkeypatch.setattr(stt_module, "pocketsphinx_available", lambda: False)
    with pytest.raises(ServiceError, match=re.escape("pip install 'voxwire[demo]'")):
        PocketSphinxStt()
    monkeypatch.setattr(tts_module, "espeak_available", lambda: False)
    with pytest.raises(ServiceError, match=re.escape("pip install 'voxwire[demo]'")):
        tts_module._Engine()
