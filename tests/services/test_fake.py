"""The fake services keep the contracts of voxwire.services.base, on a real asyncio loop."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from voxwire.errors import ServiceError
from voxwire.services.base import (
    PCM,
    ChatMessage,
    LanguageModel,
    LlmEvent,
    LlmStream,
    SpeechAudio,
    SpeechToText,
    SttStream,
    TextDelta,
    TextToSpeech,
    ToolCall,
    ToolSpec,
    Transcript,
    TtsStream,
    Usage,
)
from voxwire.services.fake import (
    FakeLlm,
    FakeReply,
    FakeStt,
    FakeTts,
    speech_signal,
    split_tokens,
)

T = TypeVar("T")
RATE = 16000


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


def tone(seconds: float, amplitude: float = 3000.0, rate: int = RATE) -> PCM:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> PCM:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def dbfs(pcm: PCM) -> float:
    rms = math.sqrt(float(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
    return 20 * math.log10(max(rms, 1e-9) / 32768)


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


async def drain(stream: Any, into: list[Any]) -> None:
    """Iterate ``stream`` into ``into`` (which keeps what came before a failure)."""
    async for item in stream:
        into.append(item)  # noqa: PERF401 - kept item by item on purpose


# --- protocols ---------------------------------------------------------------------------


def test_fakes_fit_the_protocols() -> None:
    async def main() -> None:
        stt: SpeechToText = FakeStt(["a"])
        llm: LanguageModel = FakeLlm(lambda m: "a")
        tts: TextToSpeech = FakeTts()
        assert isinstance(stt, SpeechToText)
        assert isinstance(llm, LanguageModel)
        assert isinstance(tts, TextToSpeech)
        stt_stream: SttStream = stt.stream()
        llm_stream: LlmStream = llm.complete([])
        tts_stream: TtsStream = tts.stream()
        assert isinstance(stt_stream, SttStream)
        assert isinstance(llm_stream, LlmStream)
        assert isinstance(tts_stream, TtsStream)
        assert stt.sample_rate == tts.sample_rate == RATE
        for s in (stt_stream, llm_stream, tts_stream):
            await s.aclose()

    run(main())


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="latency"):
        FakeStt(["a"], latency=-1)
    with pytest.raises(ValueError, match="at least one"):
        FakeStt([])
    with pytest.raises(ValueError, match="interim_every"):
        FakeStt(["a"], interim_every=0)
    with pytest.raises(ValueError, match="sample_rate"):
        FakeStt(["a"], sample_rate=0)
    with pytest.raises(ValueError, match="first_token"):
        FakeLlm(lambda m: "", first_token=math.nan)
    with pytest.raises(ValueError, match="fail_after"):
        FakeLlm(lambda m: "", fail_after=-1)
    with pytest.raises(ValueError, match="chunk"):
        FakeTts(chunk=0)
    with pytest.raises(ValueError, match="words_per_second"):
        FakeTts(words_per_second=0)


# --- speech-to-text ----------------------------------------------------------------------


def test_stt_finds_utterances_and_reads_the_script() -> None:
    stt = FakeStt(["hello there friend", "second one"], latency=0.1, interim_every=0.1)

    async def main() -> list[Transcript]:
        s = stt.stream()
        s.push(silence(0.2))
        s.push(tone(0.5))
        s.push(silence(0.3))
        s.push(tone(0.3))
        s.push(silence(0.3))
        s.end_input()
        return await collect(s)

    results = run(main())
    finals = [r for r in results if r.final]
    assert [f.text for f in finals] == ["hello there friend", "second one"]
    assert all(f.speech_final and not f.from_finalize for f in finals)
    assert finals[0].start == pytest.approx(0.2)
    assert finals[0].end == pytest.approx(0.7)
    assert finals[1].start == pytest.approx(1.0)
    assert finals[1].end == pytest.approx(1.3)
    # words evenly spread over the utterance
    words = finals[0].words
    assert [w.text for w in words] == ["hello", "there", "friend"]
    assert words[0].start == pytest.approx(0.2)
    assert words[-1].end == pytest.approx(0.7)
    assert [w.end - w.start for w in words] == pytest.approx([0.5 / 3] * 3)
    assert stt.utterances == 2
    assert stt.audio_seconds == pytest.approx(1.6)


def test_stt_interim_results_are_growing_prefixes_before_the_final() -> None:
    stt = FakeStt(["one two three four five six"], latency=0.05, interim_every=0.2)

    async def main() -> list[Transcript]:
        s = stt.stream()
        s.push(tone(1.5))
        s.push(silence(0.1))
        s.end_input()
        return await collect(s)

    results = run(main())
    assert results[-1].final
    assert results[-1].text == "one two three four five six"
    interims = results[:-1]
    assert len(interims) >= 3
    assert not any(r.final for r in interims)
    counts = [len(r.text.split()) for r in interims]
    assert counts == sorted(counts)
    assert len(set(counts)) == len(counts)
    for r in interims:
        assert "one two three four five six".startswith(r.text)
        assert r.start == 0.0
        # about words_per_second (3) words per second of speech so far
        assert len(r.text.split()) == min(6, math.ceil(r.end * 3 - 1e-9))
        assert len(r.words) == len(r.text.split())


def test_stt_final_comes_when_latency_of_silence_has_been_pushed() -> None:
    stt = FakeStt(["x"], latency=0.1)

    async def main() -> None:
        s = stt.stream()
        s.push(tone(0.2))
        s.push(silence(0.09))
        assert s.utterances == 0
        s.push(silence(0.01))
        assert s.utterances == 1
        result = await asyncio.wait_for(anext(s), 1)
        assert result.final
        assert result.end == pytest.approx(0.2)
        await s.aclose()

    run(main())


def test_stt_final_in_real_time_follows_the_last_speech_by_latency() -> None:
    latency = 0.06
    stt = FakeStt(["x"], latency=latency, interim_every=math.inf)

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        s = stt.stream()
        speech_end = 0.0

        async def feed() -> None:
            nonlocal speech_end
            for i in range(10):  # 20 ms pieces, pushed in real time
                s.push(tone(0.02) if i < 5 else silence(0.02))
                if i == 4:
                    speech_end = loop.time()
                await asyncio.sleep(0.02)
            s.end_input()

        task = asyncio.create_task(feed())
        first = await anext(s)
        arrived = loop.time()
        await task
        assert first.final
        return speech_end, arrived

    speech_end, arrived = run(main())
    assert arrived - speech_end >= latency - 0.005
    assert arrived - speech_end < latency + 1.0


def test_stt_results_do_not_depend_on_how_the_audio_is_cut() -> None:
    audio = np.concatenate([silence(0.13), tone(0.41), silence(0.27), tone(0.33), silence(0.2)])

    async def transcribe(piece: int) -> list[Transcript]:
        s = FakeStt(["a b c d", "e f"], latency=0.15, interim_every=0.1).stream()
        for i in range(0, len(audio), piece):
            s.push(audio[i : i + piece])
        s.end_input()
        return await collect(s)

    async def main() -> list[list[Transcript]]:
        return [await transcribe(n) for n in (len(audio), 1, 7, 160, 333, 4096)]

    whole, *others = run(main())
    assert [r.text for r in whole if r.final] == ["a b c d", "e f"]
    for other in others:
        assert other == whole


def test_stt_finalize_gives_the_final_at_once() -> None:
    stt = FakeStt(["first", "second"], latency=1.0, interim_every=math.inf)

    async def main() -> list[Transcript]:
        s = stt.stream()
        s.finalize()  # nothing under way: no result
        s.push(tone(0.3))
        s.push(silence(0.05))
        s.finalize()
        result = await asyncio.wait_for(anext(s), 1)
        assert result.final
        assert result.from_finalize
        assert not result.speech_final
        assert result.end == pytest.approx(0.3)
        s.push(tone(0.1))
        s.end_input()
        return [result, *await collect(s)]

    results = run(main())
    assert [(r.text, r.final, r.from_finalize) for r in results] == [
        ("first", True, True),
        ("second", True, False),
    ]


def test_stt_threshold_decides_what_is_speech() -> None:
    async def finals(threshold: float) -> int:
        s = FakeStt(["x"], threshold_dbfs=threshold).stream()
        s.push(tone(0.3, amplitude=100))  # about -53 dBFS
        s.end_input()
        return sum(r.final for r in await collect(s))

    assert run(finals(-45.0)) == 0
    assert run(finals(-60.0)) == 1


def test_stt_callable_script_and_cycling_sequence() -> None:
    async def texts(script: Any) -> list[str]:
        s = FakeStt(script, latency=0.05).stream()
        for _ in range(3):
            s.push(tone(0.1))
            s.push(silence(0.1))
        s.end_input()
        return [r.text for r in await collect(s) if r.final]

    assert run(texts(lambda n: f"utterance {n}")) == ["utterance 0", "utterance 1", "utterance 2"]
    assert run(texts(["a", "b"])) == ["a", "b", "a"]
    assert run(texts("same")) == ["same", "same", "same"]


def test_stt_script_failure_is_a_service_error() -> None:
    def script(n: int) -> str:
        if n == 1:
            raise KeyError(n)
        return "ok"

    async def main() -> list[str]:
        s = FakeStt(script, latency=0.05).stream()
        for _ in range(2):
            s.push(tone(0.1))
            s.push(silence(0.1))
        results: list[Transcript] = []
        with pytest.raises(ServiceError) as info:
            await drain(s, results)
        assert info.value.service == "stt"
        assert info.value.reason == "transcripts"
        return [r.text for r in results]

    assert run(main()) == ["ok"]


def test_stt_aclose_drops_pending_results_and_later_audio() -> None:
    async def main() -> None:
        s = FakeStt(["x"], latency=0.05).stream()
        s.push(tone(0.2))
        s.push(silence(0.1))
        assert s.utterances == 1
        await s.aclose()
        assert await collect(s) == []
        s.push(tone(0.2))
        assert s.dropped_samples == round(0.2 * RATE)
        assert s.audio_seconds == pytest.approx(0.3)

    run(main())


def test_stt_aclose_ends_a_waiting_iteration() -> None:
    async def main() -> None:
        s = FakeStt(["x"]).stream()
        task = asyncio.create_task(collect(s))
        await asyncio.sleep(0.01)
        assert not task.done()
        await s.aclose()
        assert await asyncio.wait_for(task, 1) == []

    run(main())


def test_stt_push_checks_its_input() -> None:
    s = FakeStt(["x"]).stream()
    with pytest.raises(TypeError, match="int16"):
        s.push(np.zeros(10, dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        s.push(np.zeros((2, 10), dtype=np.int16))


# --- language model ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Hello there, caller.", "", "  two  spaces ", "don't stop\nnow!", "naïve café 3.5%", "…"],
)
def test_split_tokens_keeps_every_character(text: str) -> None:
    tokens = split_tokens(text)
    assert "".join(tokens) == text
    assert all(tokens)


def test_split_tokens_is_word_ish() -> None:
    assert split_tokens("Hello there, caller.") == ["Hello", " there", ",", " caller", "."]
    assert split_tokens("It's 5 o'clock!") == ["It's", " 5", " o'clock", "!"]


def test_llm_streams_tokens_at_its_pace() -> None:
    first_token, per_token = 0.05, 0.01
    llm = FakeLlm(lambda m: "One two three four.", first_token=first_token, per_token=per_token)

    async def main() -> tuple[list[tuple[float, LlmEvent]], float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with llm.complete([ChatMessage("user", "hi")]) as stream:
            return [(loop.time() - t0, e) async for e in stream], loop.time() - t0

    timed, total = run(main())
    events = [e for _, e in timed]
    assert events == [TextDelta(t) for t in ("One", " two", " three", " four", ".")]
    times = [t for t, _ in timed]
    assert times[0] >= first_token - 0.002
    for i, t in enumerate(times):
        assert t >= first_token + i * per_token - 0.002
    assert total < first_token + len(times) * per_token + 1.0
    record = llm.requests[0]
    assert record.messages == (ChatMessage("user", "hi"),)
    assert record.tokens == 5
    assert record.text == "One two three four."
    assert record.done
    assert not record.cancelled


def test_llm_tool_calls_and_usage_follow_the_text() -> None:
    call = ToolCall("c1", "lookup", {"q": "x"})
    usage = Usage(prompt_tokens=7, completion_tokens=3)
    spec = ToolSpec("lookup")
    llm = FakeLlm(
        lambda m: FakeReply("Let me check.", tool_calls=[call], usage=usage),
        first_token=0,
        per_token=0,
    )

    async def main() -> list[LlmEvent]:
        return await collect(llm.complete([], tools=[spec]))

    events = run(main())
    text = [TextDelta("Let"), TextDelta(" me"), TextDelta(" check"), TextDelta(".")]
    assert events == [*text, call, usage]
    assert llm.requests[0].tools == (spec,)
    assert llm.requests[0].tool_calls == [call]


def test_llm_responder_sees_the_messages() -> None:
    def reply(messages: Any) -> str:
        return f"you said {messages[-1].content}"

    llm = FakeLlm(reply, first_token=0, per_token=0)

    async def main() -> str:
        events = await collect(llm.complete([ChatMessage("user", "pancakes")]))
        return "".join(e.text for e in events if isinstance(e, TextDelta))

    assert run(main()) == "you said pancakes"


def test_llm_aclose_stops_generation_at_once() -> None:
    llm = FakeLlm(lambda m: "word " * 100, first_token=0.01, per_token=0.01)

    async def main() -> None:
        stream = llm.complete([])
        seen: list[LlmEvent] = []

        task = asyncio.create_task(drain(stream, seen))
        while len(seen) < 3:
            await asyncio.sleep(0.005)
        await stream.aclose()
        await asyncio.wait_for(task, 0.5)
        n = len(seen)
        await asyncio.sleep(0.05)
        assert len(seen) == n
        record = llm.requests[0]
        assert record.cancelled
        assert not record.done
        assert record.tokens == n < 100

    run(main())


def test_llm_aclose_before_the_first_token() -> None:
    llm = FakeLlm(lambda m: "never heard", first_token=0.2)

    async def main() -> list[LlmEvent]:
        stream = llm.complete([])
        task = asyncio.create_task(collect(stream))
        await asyncio.sleep(0.01)
        await stream.aclose()
        return await asyncio.wait_for(task, 0.1)

    assert run(main()) == []
    assert llm.requests[0].cancelled
    assert llm.requests[0].tokens == 0


def test_llm_responder_failure_is_a_service_error() -> None:
    def broken(messages: Any) -> str:
        raise RuntimeError("model crashed")

    async def main(llm: FakeLlm) -> ServiceError:
        with pytest.raises(ServiceError) as info:
            await collect(llm.complete([]))
        # the stream stays ended
        return info.value

    llm = FakeLlm(broken, first_token=0.01)
    error = run(main(llm))
    assert error.service == "llm"
    assert error.reason == "responder"
    assert "model crashed" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    assert llm.requests[0].error is error

    def unavailable(messages: Any) -> str:
        raise ServiceError("llm", "status_503")

    assert run(main(FakeLlm(unavailable, first_token=0))).reason == "status_503"


def test_llm_fail_after_breaks_the_stream_mid_reply() -> None:
    llm = FakeLlm(lambda m: "a b c d e", first_token=0, per_token=0, fail_after=2)

    async def main() -> list[LlmEvent]:
        seen: list[LlmEvent] = []
        stream = llm.complete([])
        with pytest.raises(ServiceError, match="fail_after") as info:
            await drain(stream, seen)
        assert info.value.reason == "fake_failure"
        assert await collect(stream) == []
        return seen

    assert run(main()) == [TextDelta("a"), TextDelta(" b")]


def test_llm_stall_hangs_until_closed() -> None:
    llm = FakeLlm(lambda m: "hi", first_token=0, stall=True)

    async def main() -> None:
        stream = llm.complete([])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)
        await stream.aclose()
        assert await collect(stream) == []

    run(main())
    assert llm.requests[0].cancelled


def test_llm_stream_made_outside_a_loop_starts_its_clock_when_iterated() -> None:
    llm = FakeLlm(lambda m: "late start", first_token=0.03, per_token=0)
    stream = llm.complete([])

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await anext(stream)
        await stream.aclose()
        return loop.time() - t0

    assert run(main()) >= 0.028


# --- text-to-speech ----------------------------------------------------------------------


async def synthesise(tts: FakeTts, *texts: str) -> list[SpeechAudio]:
    stream = tts.stream()
    for text in texts:
        stream.push(text)
        stream.flush()
    stream.end_input()
    return await collect(stream)


def test_tts_waits_for_a_flush() -> None:
    tts = FakeTts(first_audio=0.01)

    async def main() -> None:
        stream = tts.stream()
        stream.push("Not yet")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)
        assert tts.characters == 0
        stream.push(" now.")
        stream.flush()
        chunk = await asyncio.wait_for(anext(stream), 1)
        assert chunk.words[0].text == "Not"
        assert tts.characters == len("Not yet now.")
        await stream.aclose()

    run(main())


def test_tts_first_audio_latency_then_faster_than_real_time() -> None:
    first_audio = 0.05
    tts = FakeTts(first_audio=first_audio, chunk=0.1)
    text = "This reply is long enough to last for several seconds of synthetic speech."

    async def main() -> tuple[list[float], list[SpeechAudio]]:
        loop = asyncio.get_running_loop()
        stream = tts.stream()
        stream.push(text)
        t0 = loop.time()
        stream.flush()
        stream.end_input()
        times, chunks = [], []
        async for c in stream:
            times.append(loop.time() - t0)
            chunks.append(c)
        return times, chunks

    times, chunks = run(main())
    audio_seconds = sum(len(c.pcm) for c in chunks) / RATE
    assert audio_seconds > 3.0
    assert times[0] >= first_audio - 0.002
    assert times[-1] < audio_seconds
    assert all(len(c.pcm) == 1600 for c in chunks[:-1])
    assert 0 < len(chunks[-1].pcm) <= 1600
    assert [c.text for c in chunks] == [""] * (len(chunks) - 1) + [text]
    record = tts.requests[0]
    assert record.done
    assert record.characters == len(text)
    assert record.chunks == len(chunks)
    assert record.samples == sum(len(c.pcm) for c in chunks)


def test_tts_repeats_a_text_exactly_and_its_chunks_are_the_callers_own() -> None:
    """The synthesised audio of a text is kept for the next stream that says it: each
    chunk is a writable copy, so what one consumer does to its audio reaches no other."""
    tts = FakeTts(first_audio=0)
    text = "Sure. We open at nine."
    first = run(synthesise(tts, text))
    for chunk in first:
        assert chunk.pcm.flags.writeable
        chunk.pcm[:] = 0  # a consumer that works in place (a gain, a mix)
    second = run(synthesise(tts, text))
    expected, _ = speech_signal(text, RATE)
    np.testing.assert_array_equal(np.concatenate([c.pcm for c in second]), expected)
    assert [c.words for c in second] == [c.words for c in first]


def test_tts_word_timings_match_the_audio() -> None:
    tts = FakeTts(first_audio=0, chunk=0.13)
    texts = ["Hello there, my friend. ", "How are you doing today?", " Fine!"]
    chunks = run(synthesise(tts, *texts))
    pcm = np.concatenate([c.pcm for c in chunks])
    words = [w for c in chunks for w in c.words]
    assert [w.text for w in words] == " ".join(texts).split()
    assert [c.text for c in chunks if c.text] == texts
    # every word starts in the chunk that carries it
    at = 0
    for c in chunks:
        for w in c.words:
            assert at <= round(w.start * RATE) < at + len(c.pcm)
        at += len(c.pcm)
    # loud inside each word, silent between words
    for w in words:
        inside = pcm[round(w.start * RATE) : round(w.end * RATE)]
        assert len(inside) > 0.05 * RATE
        assert -24 < dbfs(inside) < -16
    for a, b in itertools.pairwise(words):
        gap = pcm[round(a.end * RATE) : round(b.start * RATE)]
        assert len(gap) > 0
        assert not gap.any()
        assert a.end < b.start
    # a longer pause after punctuation
    gaps = {a.text: b.start - a.end for a, b in itertools.pairwise(words)}
    assert gaps["there,"] > gaps["Hello"]
    assert gaps["friend."] > gaps["there,"]


def test_tts_word_length_follows_its_letters() -> None:
    pcm, words = speech_signal("a extraordinary", RATE)
    (_, s0, e0), (_, s1, e1) = words
    assert e1 - s1 > 2 * (e0 - s0)
    assert len(pcm) > e1
    assert dbfs(pcm[s1:e1]) > -24


def test_tts_signal_is_deterministic_and_speech_like() -> None:
    a, wa = speech_signal("same words here", 8000)
    b, wb = speech_signal("same words here", 8000)
    assert np.array_equal(a, b)
    assert wa == wb
    c, _ = speech_signal("other words here", 8000)
    assert not np.array_equal(a[: len(c)], c[: len(a)])
    assert speech_signal("   ", 8000)[0].size == 0
    # voiced: most energy below 1 kHz, some above the pitch
    _, s, e = wa[0]
    spectrum = np.abs(np.fft.rfft(a[s:e].astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(e - s, 1 / 8000)
    assert spectrum[freqs < 1000].sum() > 0.8 * spectrum.sum()
    assert spectrum[(freqs > 300) & (freqs < 4000)].sum() > 0.1 * spectrum.sum()


def test_tts_audio_is_found_by_the_fake_stt() -> None:
    async def main() -> list[Transcript]:
        chunks = await synthesise(FakeTts(first_audio=0), "One sentence here. ", "And another.")
        stt = FakeStt(["first", "second"], latency=0.2, interim_every=math.inf)
        s = stt.stream()
        for c in chunks:
            s.push(c.pcm)
        s.push(silence(0.3))
        s.end_input()
        return await collect(s)

    results = run(main())
    assert [r.text for r in results] == ["first", "second"]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_tts_sentences_are_utterances_for_the_native_vad(rate: int) -> None:
    from voxwire.vad import SpeechEnd, SpeechStart, Vad

    text = "Hello there, my friend. How are you doing today? Fine thanks."
    pcm, words = speech_signal(text, rate)
    lead = rate // 2
    audio = np.concatenate([np.zeros(lead, np.int16), pcm, np.zeros(rate, np.int16)])
    events = list(Vad(rate).feed(audio))
    starts = [e.time - 0.5 for e in events if isinstance(e, SpeechStart)]
    ends = [e.time - 0.5 for e in events if isinstance(e, SpeechEnd)]
    firsts = [words[i][1] / rate for i in (0, 4, 9)]  # Hello, How, Fine
    lasts = [words[i][2] / rate for i in (3, 8, 10)]  # friend., today?, thanks.
    assert starts == pytest.approx(firsts, abs=0.04)
    assert ends == pytest.approx(lasts, abs=0.04)


def test_tts_word_times_run_across_flushes() -> None:
    chunks = run(synthesise(FakeTts(first_audio=0), "One.", "Two."))
    words = [w for c in chunks for w in c.words]
    first_len = sum(len(c.pcm) for c in chunks[: 1 + [c.text for c in chunks].index("One.")])
    assert words[0].start == 0.0
    assert words[1].start == pytest.approx(first_len / RATE)


def test_tts_flushes_are_synthesised_in_order() -> None:
    tts = FakeTts(first_audio=0.02)

    async def main() -> list[str]:
        stream = tts.stream()
        stream.push("First part.")
        stream.flush()
        await asyncio.sleep(0.01)
        stream.push("Second part.")
        stream.flush()
        stream.flush()  # nothing new: nothing more
        stream.push("   ")
        stream.end_input()  # spaces only: nothing to say
        return [c.text for c in await collect(stream) if c.text]

    assert run(main()) == ["First part.", "Second part."]
    assert tts.requests[0].texts == ["First part.", "Second part."]


def test_tts_aclose_while_waiting_bills_nothing() -> None:
    tts = FakeTts(first_audio=0.2)

    async def main() -> list[SpeechAudio]:
        stream = tts.stream()
        stream.push("Interrupted before a sound.")
        stream.flush()
        task = asyncio.create_task(collect(stream))
        await asyncio.sleep(0.01)
        await stream.aclose()
        return await asyncio.wait_for(task, 0.1)

    assert run(main()) == []
    assert tts.characters == 0
    assert tts.requests[0].cancelled


def test_tts_aclose_mid_reply_stops_the_audio() -> None:
    tts = FakeTts(first_audio=0, chunk=0.05)

    async def main() -> None:
        stream = tts.stream()
        stream.push("A reply long enough for many chunks of audio to come out.")
        stream.flush()
        stream.push("And a second sentence that is never synthesised.")
        stream.flush()
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()
        assert await collect(stream) == []
        stream.push("more")
        stream.flush()
        assert await collect(stream) == []
        record = tts.requests[0]
        assert record.cancelled
        assert record.chunks == len(got) == 2
        assert record.texts == ["A reply long enough for many chunks of audio to come out."]

    run(main())


def test_tts_end_input_without_text_ends_at_once() -> None:
    async def main() -> list[SpeechAudio]:
        stream = FakeTts().stream()
        stream.end_input()
        return await collect(stream)

    assert run(main()) == []


def test_tts_stall_and_fail_after() -> None:
    async def stalled() -> None:
        stream = FakeTts(first_audio=0, stall=True).stream()
        stream.push("hi")
        stream.end_input()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(anext(stream), 0.05)
        await stream.aclose()
        assert await collect(stream) == []

    async def failing() -> int:
        tts = FakeTts(first_audio=0, chunk=0.05, fail_after=3)
        stream = tts.stream()
        stream.push("Enough words for more than three chunks of audio.")
        stream.end_input()
        got: list[SpeechAudio] = []
        with pytest.raises(ServiceError) as info:
            await drain(stream, got)
        assert info.value.service == "tts"
        assert info.value.reason == "fake_failure"
        assert tts.requests[0].error is info.value
        return len(got)

    run(stalled())
    assert run(failing()) == 3


def test_tts_push_checks_its_input() -> None:
    stream = FakeTts().stream()
    with pytest.raises(TypeError, match="str"):
        stream.push(b"bytes")  # type: ignore[arg-type]


def test_docstring_examples() -> None:
    import doctest

    import voxwire.services.fake

    result = doctest.testmod(voxwire.services.fake)
    assert result.attempted > 0
    assert result.failed == 0
