"""The fault table: every client, against its local fake server, for every fault.

Faults: 429, 500, connection refused, disconnect mid-stream, stall before the first byte,
stall mid-stream, malformed frame. For each (client, fault):

- alone, the client raises a typed :class:`~voxwire.errors.ServiceError` with the
  expected ``reason``, after the retries the fault allows (429, 500 and refused are
  tried again, the others never), and its key is in no error text and no log line;
- in a fallback chain in front of an offline engine of the same kind, the chain counts
  the failure and the engine's output arrives within a bounded time: in the same turn
  when the client failed before yielding anything, else (the reply had begun) the turn
  raises the typed error and the next turn goes to the engine.

Everything runs on loopback sockets (port 0); timeouts are short so the table takes
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the HTTP clients need aiohttp")
pytest.importorskip("websockets", reason="the WebSocket clients need websockets")

from voxwire.errors import ServiceError
from voxwire.services.base import (
    ChatMessage,
    LanguageModel,
    SpeechToText,
    TextDelta,
    TextToSpeech,
)
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts
from voxwire.services.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from voxwire.services.llm_anthropic import AnthropicModel
from voxwire.services.llm_openai import OpenAIChatModel
from voxwire.services.retry import RetryPolicy
from voxwire.services.stt_deepgram import DeepgramStt
from voxwire.services.stt_openai import OpenAITranscriptionStt
from voxwire.services.testing.llm import (
    FakeServer,
    Script,
    anthropic_start,
    anthropic_text_block,
    chunk,
    sse,
)
from voxwire.services.testing.stt import KEY as DEEPGRAM_KEY
from voxwire.services.testing.stt import Answer, FakeDeepgram, FakeTranscriptions
from voxwire.services.testing.tts import CartesiaFake, ElevenLabsFake, OpenAISpeechFake
from voxwire.services.tts_cartesia import CartesiaTts
from voxwire.services.tts_elevenlabs import ElevenLabsTts
from voxwire.services.tts_openai import OpenAISpeechTts

FAULTS = ["429", "500", "refused", "drop", "stall_first", "stall_mid", "malformed"]
REASON = {
    "429": "status_429",
    "500": "status_500",
    "refused": "connect",
    "drop": "closed",
    "stall_first": "timeout",
    "stall_mid": "timeout",
    "malformed": "bad_message",
}
ATTEMPTS = {"429": 2, "500": 2, "refused": 2}  # the others: 1 (never retried)
RETRY = RetryPolicy(attempts=2, base_delay=0.01, budget=1.0)
STALL = 0.3  # seconds of silence that end an attempt
BOUND = 3.0  # seconds within which the fallback's output must arrive
KEY = "fake-key-SECRET-faults-0042"
HELLO = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"))
SPOKEN = "Hello there, my friend."


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)


def leaks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log lines of the client side that show the key (the fake servers' own debug lines,
    which print the headers they received, are not the client's)."""
    return [
        r.getMessage()
        for r in caplog.records
        if KEY in r.getMessage()
        and not r.name.startswith(("websockets.server", "voxwire.services.testing"))
    ]


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def refused() -> AsyncIterator[None]:
    yield None


# --- one turn of each kind ---------------------------------------------------------------


async def llm_turn(model: LanguageModel) -> list[object]:
    got: list[object] = []
    stream = model.complete(HELLO)
    try:
        async for event in stream:
            got.append(event)  # noqa: PERF401 - what came before an error is kept
    except ServiceError as e:
        e.partial = got  # type: ignore[attr-defined]
        raise
    return got


async def tts_turn(tts: TextToSpeech) -> list[object]:
    got: list[object] = []
    stream = tts.stream()
    try:
        stream.push(SPOKEN)
        stream.flush()
        stream.end_input()
        async for chunk_ in stream:
            if len(chunk_.pcm):
                got.append(chunk_)  # noqa: PERF401 - what came before an error is kept
    except ServiceError as e:
        e.partial = got  # type: ignore[attr-defined]
        raise
    finally:
        await stream.aclose()
    return got


async def stt_turn(stt: SpeechToText) -> list[object]:
    got: list[object] = []
    stream = stt.stream()
    try:
        audio = np.concatenate([tone(0.4), silence(0.5)])
        for i in range(0, len(audio), 320):  # 20 ms pieces, faster than real time
            stream.push(audio[i : i + 320])
            await asyncio.sleep(0.005)
        stream.finalize()
        async for result in stream:
            got.append(result)
            if result.final and result.text:
                break
    except ServiceError as e:
        e.partial = [r for r in got if getattr(r, "final", False)]  # type: ignore[attr-defined]
        raise
    finally:
        await stream.aclose()
    return got


# --- the clients and how each fault is made -------------------------------------------------


@dataclass
class Harness:
    kind: str
    serve: Callable[[str], Any]  # fault -> async context manager of the fake
    make: Callable[[Any, str], Any]  # (fake, fault) -> the client
    attempts: Callable[[Any], int]
    turn: Callable[[Any], Any]
    engine: Callable[[], Any]


def _llm_scripts(fault: str, first: bytes) -> list[Script]:
    error = b'{"error": {"message": "no", "type": "server_error"}}'
    if fault == "429":
        return [Script([error], status=429, headers={"Retry-After": "0"})] * 2
    if fault == "500":
        return [Script([error], status=500)] * 2
    if fault == "drop":
        return [Script([first], end="drop")]
    if fault == "stall_first":
        return [Script(head_delay=3600.0)]
    if fault == "stall_mid":
        return [Script([first], end="stall")]
    return [Script([b"data: {not json\n\n"])]


def _http_base(fake: Any, fault: str, suffix: str) -> str:
    return f"http://127.0.0.1:{free_port()}{suffix}" if fault == "refused" else fake.base + suffix


def openai_llm() -> Harness:
    first = sse(chunk({"content": "Hel"}))
    return Harness(
        "llm",
        lambda f: refused() if f == "refused" else FakeServer(_llm_scripts(f, first)),
        lambda fake, f: OpenAIChatModel(
            _http_base(fake, f, "/v1"), "m", api_key=KEY, timeout=STALL, retry=RETRY
        ),
        lambda fake: len(fake.requests),
        llm_turn,
        lambda: FakeLlm(lambda m: "Fine, thanks.", first_token=0.01, per_token=0.0),
    )


def anthropic_llm() -> Harness:
    first = anthropic_start() + b"".join(anthropic_text_block(0, ["Hel"])[:2])
    return Harness(
        "llm",
        lambda f: refused() if f == "refused" else FakeServer(_llm_scripts(f, first)),
        lambda fake, f: AnthropicModel(
            "c", api_key=KEY, base_url=_http_base(fake, f, ""), timeout=STALL, retry=RETRY
        ),
        lambda fake: len(fake.requests),
        llm_turn,
        lambda: FakeLlm(lambda m: "Fine, thanks.", first_token=0.01, per_token=0.0),
    )


def _tts_mode(fault: str) -> str:
    return {
        "429": "status_429",
        "500": "status_500",
        "drop": "drop",
        "stall_first": "stall",
        "stall_mid": "stall_mid",
        "malformed": "garbage",
    }.get(fault, "ok")


def openai_tts() -> Harness:
    return Harness(
        "tts",
        lambda f: OpenAISpeechFake(_tts_mode(f), sse=True, key=KEY),
        lambda fake, f: OpenAISpeechTts(
            _http_base(fake, f, ""), api_key=KEY, timeout=STALL, retry=RETRY
        ),
        lambda fake: len(fake.requests),
        tts_turn,
        lambda: FakeTts(sample_rate=16000, first_audio=0.01),
    )


def _ws_base(fake: Any, fault: str) -> str:
    return f"ws://127.0.0.1:{free_port()}" if fault == "refused" else fake.base


def elevenlabs_tts() -> Harness:
    return Harness(
        "tts",
        lambda f: ElevenLabsFake(16000, _tts_mode(f), key=KEY),
        lambda fake, f: ElevenLabsTts(
            "v", api_key=KEY, base_url=_ws_base(fake, f), timeout=STALL, retry=RETRY
        ),
        lambda fake: len(fake.paths),
        tts_turn,
        lambda: FakeTts(sample_rate=24000, first_audio=0.01),
    )


def cartesia_tts() -> Harness:
    return Harness(
        "tts",
        lambda f: CartesiaFake(16000, _tts_mode(f), key=KEY),
        lambda fake, f: CartesiaTts(
            "v", api_key=KEY, base_url=_ws_base(fake, f), timeout=STALL, retry=RETRY
        ),
        lambda fake: len(fake.paths),
        tts_turn,
        lambda: FakeTts(sample_rate=16000, first_audio=0.01),
    )


def deepgram_stt() -> Harness:
    def serve(fault: str) -> FakeDeepgram:
        status = {"429": 429, "500": 500}.get(fault)
        mode = {
            "drop": "drop",
            "stall_first": "stall",
            "stall_mid": "stall_mid",
            "malformed": "garbage",
        }.get(fault, "normal")
        return FakeDeepgram(["hello world"], mode=mode, status=status)

    def make(fake: FakeDeepgram, fault: str) -> DeepgramStt:
        url = f"ws://127.0.0.1:{free_port()}/v1/listen" if fault == "refused" else fake.url
        return DeepgramStt(api_key=DEEPGRAM_KEY, url=url, stall_timeout=STALL, retry=RETRY)

    return Harness(
        "stt",
        serve,
        make,
        lambda fake: fake.attempts,
        stt_turn,
        lambda: FakeStt(["fine thanks"], latency=0.1),
    )


def openai_stt() -> Harness:
    def serve(fault: str) -> FakeTranscriptions:
        answers = {
            "429": [Answer(status=429)] * 2,
            "500": [Answer(status=500)] * 2,
            "drop": [Answer(drop=True)],
            "stall_first": [Answer(stall=3600.0)],
            "stall_mid": [Answer(stall_mid=True)],
            "malformed": [Answer(body=b"<html>busy</html>")],
        }.get(fault, [])
        return FakeTranscriptions(list(answers))

    return Harness(
        "stt",
        serve,
        lambda fake, f: OpenAITranscriptionStt(
            _http_base(fake, f, "/v1") if f == "refused" else fake.base,
            api_key=KEY,
            timeout=STALL,
            retry=RETRY,
        ),
        lambda fake: len(fake.uploads),
        stt_turn,
        lambda: FakeStt(["fine thanks"], latency=0.1),
    )


HARNESSES: dict[str, Callable[[], Harness]] = {
    "openai-llm": openai_llm,
    "anthropic-llm": anthropic_llm,
    "openai-tts": openai_tts,
    "elevenlabs-tts": elevenlabs_tts,
    "cartesia-tts": cartesia_tts,
    "deepgram-stt": deepgram_stt,
    "openai-stt": openai_stt,
}
CHAINS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "llm": lambda s: FallbackLLM(s),
    "tts": lambda s: FallbackTTS(s),
    "stt": lambda s: FallbackSTT(s),
}


def _output(kind: str, got: list[object]) -> bool:
    if kind == "llm":
        return "".join(e.text for e in got if isinstance(e, TextDelta)) == "Fine, thanks."
    if kind == "stt":
        return any(getattr(r, "text", "") == "fine thanks" for r in got)
    return sum(len(c.pcm) for c in got) > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("client", list(HARNESSES))
def test_fault_table(client: str, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h = HARNESSES[client]()

    async def alone() -> tuple[ServiceError, int, Any]:
        async with h.serve(fault) as fake:
            service = h.make(fake, fault)
            try:
                with pytest.raises(ServiceError) as info:
                    await asyncio.wait_for(h.turn(service), 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await service.aclose()
            assert not getattr(fake, "violations", [])  # the client kept to the protocol
            return info.value, (h.attempts(fake) if fake is not None else 0), service

    error, attempts, service = asyncio.run(alone())
    assert error.reason == REASON[fault], error
    assert error.service == h.kind
    if fault != "refused":  # (a refused connection reaches no server to count it)
        assert attempts == ATTEMPTS.get(fault, 1)
    assert service.retries == ATTEMPTS.get(fault, 1) - 1
    assert KEY not in str(error)
    assert KEY not in repr(error)
    assert KEY not in repr(service)
    assert not leaks(caplog)

    async def chained() -> tuple[float, list[object], Any, ServiceError | None]:
        async with h.serve(fault) as fake:
            primary = h.make(fake, fault)
            engine = h.engine()
            chain = CHAINS[h.kind]([primary, engine])
            loop = asyncio.get_running_loop()
            began = loop.time()
            first_error: ServiceError | None = None
            try:
                got = await asyncio.wait_for(h.turn(chain), BOUND)
            except ServiceError as e:
                # the primary failed after the reply had begun: the next turn falls back
                first_error = e
                got = await asyncio.wait_for(h.turn(chain), BOUND)
            elapsed = loop.time() - began
            with contextlib.suppress(Exception):
                await primary.aclose()
            return elapsed, got, chain, first_error

    elapsed, got, chain, first_error = asyncio.run(chained())
    assert _output(h.kind, got), got
    assert elapsed < BOUND
    assert chain.failures == {f"{h.kind}:{REASON[fault]}": 1}
    if first_error is None:
        assert chain.switches == 1
        assert chain.last_switch.error.reason == REASON[fault]
        assert chain.last_switch.to_name == type(chain.services[1]).__name__
    else:
        # only a failure after something was given out is left to the caller
        assert first_error.reason == REASON[fault]
        assert first_error.partial, "a failure before any output must fall back in the turn"
        assert chain.switches == 0
    assert not leaks(caplog)


# --- Retry-After: honoured, and bounded by the policy's budget ------------------------------


@contextlib.asynccontextmanager
async def rate_limited(client: str, retry_after: str) -> AsyncIterator[Any]:
    """The client's fake, answering every attempt 429 with this ``Retry-After``."""
    h = HARNESSES[client]()
    if h.kind == "llm":
        error = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
        scripts = [Script([error], status=429, headers={"Retry-After": retry_after})] * 3
        async with FakeServer(scripts) as fake:
            yield fake
        return
    async with h.serve("429") as fake:
        fake.retry_after = retry_after
        yield fake


@pytest.mark.parametrize(("retry_after", "attempts"), [("0.3", 2), ("3600", 1)])
@pytest.mark.parametrize("client", list(HARNESSES))
def test_retry_after_is_waited_or_given_up_on_past_the_budget(
    client: str, retry_after: str, attempts: int
) -> None:
    h = HARNESSES[client]()
    policy = RetryPolicy(attempts=2, base_delay=0.0, budget=2.0)

    async def main() -> tuple[ServiceError, int, float]:
        async with rate_limited(client, retry_after) as fake:
            service = h.make(fake, "429")
            service.retry = policy
            if client in ("elevenlabs-tts", "cartesia-tts"):
                # a reply's wait for audio covers its connection's retries: keep it longer
                service.timeout = 3.0
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                with pytest.raises(ServiceError) as info:
                    # a wait of an hour would time out here: the policy gives up instead
                    await asyncio.wait_for(h.turn(service), 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await service.aclose()
            return info.value, h.attempts(fake), loop.time() - began

    error, seen, elapsed = asyncio.run(main())
    assert error.reason == "status_429"
    assert getattr(error, "retry_after", None) == float(retry_after)
    assert seen == attempts
    if attempts == 2:
        assert elapsed >= 0.3  # the second attempt waited what the server asked
