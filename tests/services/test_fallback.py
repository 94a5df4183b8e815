"""Fallback chains with in-process services: switching, replay, cool-down, reporting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np
import pytest

from voxwire.errors import ServiceError
from voxwire.services.base import (
    PCM,
    ChatMessage,
    LanguageModel,
    LlmStream,
    Preparable,
    SpeechToText,
    StreamMixin,
    TextDelta,
    TextToSpeech,
    ToolSpec,
    Transcript,
)
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts
from voxwire.services.fallback import FallbackLLM, FallbackSTT, FallbackTTS, Switch

T = TypeVar("T")
HELLO = (ChatMessage("user", "Hi"),)


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


def says(text: str) -> FakeLlm:
    return FakeLlm(lambda m: text, first_token=0.0, per_token=0.0)


def failing(reason: str = "status_503", after: int | None = None) -> FakeLlm:
    if after is None:

        def reply(messages: Sequence[ChatMessage]) -> str:
            raise ServiceError("llm", reason)

        return FakeLlm(reply, first_token=0.0, per_token=0.0)
    return FakeLlm(lambda m: "one two three", first_token=0.0, per_token=0.0, fail_after=after)


async def text_of(model: LanguageModel) -> str:
    return "".join([e.text async for e in model.complete(HELLO) if isinstance(e, TextDelta)])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_llm_switches_before_the_first_event_and_reports_it() -> None:
    clock = Clock()
    seen: list[Switch] = []
    chain = FallbackLLM([failing(), says("Hello.")], cooldown=10.0, clock=clock)
    chain.on_switch = seen.append

    async def main() -> tuple[str, list[Switch]]:
        stream = chain.complete(HELLO)
        mine: list[Switch] = []
        stream.on_switch = mine.append
        text = "".join([e.text async for e in stream if isinstance(e, TextDelta)])
        return text, mine

    text, mine = run(main)
    assert text == "Hello."
    assert seen == mine == [chain.last_switch]
    (switch,) = seen
    assert (switch.kind, switch.failed, switch.to) == ("llm", 0, 1)
    assert switch.error.reason == "status_503"
    assert switch.describe() == "llm: FakeLlm -> FakeLlm after status_503"
    assert chain.failures == {"llm:status_503": 1}
    assert chain.switches == 1


def test_llm_failure_mid_reply_is_raised_and_the_next_turn_skips_the_failed_model() -> None:
    clock = Clock()
    primary, secondary = failing(after=1), says("Hello.")
    chain = FallbackLLM([primary, secondary], cooldown=10.0, clock=clock)

    async def first() -> list[str]:
        got: list[str] = []

        async def drain() -> None:
            async for e in chain.complete(HELLO):
                got.append(e.text if isinstance(e, TextDelta) else "")  # noqa: PERF401

        with pytest.raises(ServiceError) as info:
            await drain()
        assert info.value.reason == "fake_failure"
        return got

    assert run(first) == ["one"]
    assert chain.switches == 0  # nothing was switched: the reply had begun
    assert chain.failures == {"llm:fake_failure": 1}
    assert run(lambda: text_of(chain)) == "Hello."
    assert (len(primary.requests), len(secondary.requests)) == (1, 1)
    clock.now += 10.0  # the cool-down is over: the primary goes first again
    with pytest.raises(ServiceError):
        run(lambda: text_of(chain))
    assert len(primary.requests) == 2


def test_when_every_model_fails_the_last_error_is_raised_and_all_are_counted() -> None:
    chain = FallbackLLM([failing("status_500"), failing("connect")])
    with pytest.raises(ServiceError) as info:
        run(lambda: text_of(chain))
    assert info.value.reason == "connect"
    assert chain.failures == {"llm:status_500": 1, "llm:connect": 1}
    # both cool down now: a new completion still tries them, in order
    with pytest.raises(ServiceError):
        run(lambda: text_of(chain))
    assert chain.order() == [0, 1]


class Broken:
    """A model whose complete() raises at once (an unusable client)."""

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> LlmStream:
        raise RuntimeError("no session")


def test_a_model_that_raises_at_once_is_switched_over_but_bad_messages_are_not() -> None:
    chain = FallbackLLM([Broken(), says("Hi.")])
    assert run(lambda: text_of(chain)) == "Hi."
    assert chain.failures == {"llm:error": 1}
    with pytest.raises(ValueError, match="at least one"):
        FallbackLLM([])
    with pytest.raises(ValueError, match="cooldown"):
        FallbackLLM([says("x")], cooldown=-1)


# --- TTS -------------------------------------------------------------------------------


def test_tts_replays_the_reply_on_the_next_service_and_resamples_it() -> None:
    primary = FakeTts(sample_rate=16000, fail_after=0, first_audio=0.0)
    secondary = FakeTts(sample_rate=24000, first_audio=0.0)
    chain = FallbackTTS([primary, secondary])
    assert chain.sample_rate == 16000

    async def main() -> list[int]:
        stream = chain.stream()
        stream.push("Hello ")
        stream.push("there.")
        stream.flush()
        stream.end_input()
        return [len(c.pcm) async for c in stream]

    sizes = run(main)
    assert chain.failures == {"tts:fake_failure": 1}
    (record,) = secondary.requests
    assert record.texts == ["Hello there."]  # the whole reply replayed, in order
    direct = run(lambda: _samples(FakeTts(sample_rate=24000, first_audio=0.0), "Hello there."))
    # the secondary's 24 kHz audio at the chain's 16 kHz: 2/3 of the samples
    assert sum(sizes) == pytest.approx(direct * 2 / 3, abs=2)


async def _samples(tts: TextToSpeech, text: str) -> int:
    stream = tts.stream()
    stream.push(text)
    stream.end_input()
    return sum([len(c.pcm) async for c in stream])


def test_tts_failure_after_audio_is_raised() -> None:
    chain = FallbackTTS([FakeTts(fail_after=1, first_audio=0.0, chunk=0.1), FakeTts()])

    async def main() -> int:
        stream = chain.stream()
        stream.push("Hello there, how are you doing today?")
        stream.end_input()
        n = 0

        async def drain() -> None:
            nonlocal n
            async for _ in stream:
                n += 1

        with pytest.raises(ServiceError):
            await drain()
        return n

    assert run(main) == 1
    assert chain.switches == 0
    assert chain.failures == {"tts:fake_failure": 1}


# --- STT -------------------------------------------------------------------------------


class DiesAfter(StreamMixin):
    """A recognition stream that fails once ``samples`` of audio were pushed."""

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.pushed = 0
        self.failed = asyncio.Event()

    def push(self, pcm: PCM) -> None:
        self.pushed += len(pcm)
        if self.pushed >= self.samples:
            self.failed.set()

    def finalize(self) -> None:
        pass

    def end_input(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def __aiter__(self) -> AsyncIterator[Transcript]:
        return self

    async def __anext__(self) -> Transcript:
        await self.failed.wait()
        raise ServiceError("stt", "closed", "stt: the connection broke")


class Dying:
    sample_rate = 16000

    def __init__(self, samples: int) -> None:
        self.samples = samples

    def stream(self) -> DiesAfter:
        return DiesAfter(self.samples)


def speech(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def test_stt_replays_the_unfinished_utterance_with_times_of_the_chain_stream() -> None:
    rate = 16000
    secondary = FakeStt(["second"], latency=0.1, interim_every=10.0)
    chain = FallbackSTT([FakeStt(["first"], latency=0.1, interim_every=10.0), secondary])
    # the first service hears the first utterance, then a second chain runs over a dying one
    dying = FallbackSTT([Dying(int(1.2 * rate)), secondary])

    async def main(stt: SpeechToText) -> list[Transcript]:
        stream = stt.stream()
        got: list[Transcript] = []
        audio = np.concatenate(
            [np.zeros(rate // 2, np.int16), speech(0.5), np.zeros(rate // 2, np.int16)]
        )
        for i in range(0, len(audio), 320):
            stream.push(audio[i : i + 320])
            await asyncio.sleep(0)
        stream.finalize()
        async for t in stream:
            if t.final:
                got.append(t)
                break
        await stream.aclose()
        return got

    (plain,) = run(lambda: main(chain))
    (moved,) = run(lambda: main(dying))
    assert plain.text == "first"
    assert moved.text == "second"
    # the same audio, the same place in the chain stream's time
    assert moved.start == pytest.approx(plain.start, abs=0.02)
    assert moved.end == pytest.approx(plain.end, abs=0.02)
    assert dying.failures == {"stt:closed": 1}
    assert dying.last_switch is not None
    assert dying.last_switch.to_name == "FakeStt"


def test_stt_replay_is_bounded_and_counted() -> None:
    chain = FallbackSTT([FakeStt(["x"])], replay_seconds=0.5)

    async def main() -> int:
        stream = chain.stream()
        for _ in range(60):
            stream.push(np.zeros(160, np.int16))  # 0.6 s of silence, no final
        dropped = stream.dropped_samples
        await stream.aclose()
        return dropped

    assert run(main) >= 1600
    with pytest.raises(ValueError, match="replay_seconds"):
        FallbackSTT([FakeStt(["x"])], replay_seconds=0)


# --- prepare ---------------------------------------------------------------------------


class Warm:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.prepared = 0

    async def prepare(self) -> None:
        self.prepared += 1
        if self.fails:
            raise ServiceError("tts", "connect", "tts: cannot connect")

    @property
    def sample_rate(self) -> int:
        return 16000

    def stream(self) -> object:
        raise AssertionError("not used")


def test_prepare_warms_every_service_and_a_failure_cools_it_down() -> None:
    down, up = Warm(fails=True), Warm(fails=False)
    chain = FallbackTTS([down, up, FakeTts()])  # type: ignore[list-item]
    assert isinstance(chain, Preparable)
    run(chain.prepare)
    assert (down.prepared, up.prepared) == (1, 1)
    assert chain.failures == {"tts:connect": 1}
    assert chain.order() == [1, 2, 0]
