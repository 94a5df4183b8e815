"""The per-utterance OpenAI transcription client against a local fake server (127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the transcription client needs aiohttp")

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import SpeechToText, SttStream, Transcript
from voxwire.services.stt_openai import (
    OpenAITranscriptionStream,
    OpenAITranscriptionStt,
    wav_bytes,
)
from voxwire.services.testing.stt import Answer, FakeTranscriptions

T = TypeVar("T")
KEY = "sk-test-SECRET-stt-42"


def run(make: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    async def main() -> T:
        return await asyncio.wait_for(make(), timeout)

    return asyncio.run(main())


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def client(server: FakeTranscriptions, **kwargs: Any) -> OpenAITranscriptionStt:
    return OpenAITranscriptionStt(server.base, api_key=kwargs.pop("api_key", KEY), **kwargs)


async def collect(stream: OpenAITranscriptionStream, got: list[Transcript]) -> None:
    async for t in stream:
        got.append(t)  # noqa: PERF401 - results before an error are kept


def test_the_client_fits_the_contract() -> None:
    stt = OpenAITranscriptionStt("http://127.0.0.1:1/v1", api_key=KEY)
    assert isinstance(stt, SpeechToText)
    assert isinstance(stt.stream(), SttStream)
    assert KEY not in repr(stt)
    assert stt.sample_rate == 16000


def test_each_finalize_posts_one_wav_and_yields_one_final() -> None:
    async def main() -> tuple[FakeTranscriptions, list[Transcript]]:
        async with FakeTranscriptions([Answer("Book a table."), Answer("For two.")]) as server:
            async with client(server, language="en").stream() as s:
                for _ in range(10):
                    s.push(tone(0.1))  # 1 s
                s.finalize()
                s.push(tone(0.5))
                s.finalize()
                s.end_input()
                got = [t async for t in s]
            return server, got

    server, got = run(main)
    assert [t.text for t in got] == ["Book a table.", "For two."]
    assert all(t.final and t.from_finalize for t in got)
    first, second = server.uploads
    assert first.path == "/v1/audio/transcriptions"
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert first.filename == "utterance.wav"
    assert first.content_type == "audio/wav"
    assert (first.rate, first.samples) == (16000, 16000)
    assert second.samples == 8000
    assert first.fields == {
        "model": ["whisper-1"],
        "response_format": ["verbose_json"],
        "timestamp_granularities[]": ["word"],
        "language": ["en"],
    }
    # times are seconds of the stream: the second utterance starts after the first
    assert (got[0].start, got[0].end) == (0.0, 1.0)
    assert (got[1].start, got[1].end) == (1.0, 1.5)
    assert [w.text for w in got[1].words] == ["For", "two."]
    assert got[1].words[0].start == pytest.approx(1.0)
    assert got[1].words[-1].end == pytest.approx(1.5)


def test_json_format_has_no_words_and_no_key_means_no_header() -> None:
    async def main() -> tuple[FakeTranscriptions, list[Transcript]]:
        async with FakeTranscriptions() as server:
            stt = OpenAITranscriptionStt(server.base, "gpt-4o-transcribe", response_format="json")
            async with stt.stream() as s:
                s.push(tone(0.3))
                s.end_input()  # posts what is held
                got = [t async for t in s]
            return server, got

    server, got = run(main)
    (upload,) = server.uploads
    assert "Authorization" not in upload.headers
    assert upload.fields == {"model": ["gpt-4o-transcribe"], "response_format": ["json"]}
    (result,) = got
    assert result.text == "hello world"
    assert result.words == ()


def test_an_empty_utterance_gives_an_empty_final_without_a_request() -> None:
    async def main() -> tuple[FakeTranscriptions, list[Transcript]]:
        async with FakeTranscriptions() as server, client(server).stream() as s:
            s.finalize()
            s.end_input()
            return server, [t async for t in s]

    server, got = run(main)
    assert server.uploads == []
    assert [(t.text, t.final, t.from_finalize) for t in got] == [("", True, True)]


def test_the_utterance_is_bounded_and_the_rest_counted() -> None:
    async def main() -> tuple[FakeTranscriptions, list[Transcript], int]:
        async with FakeTranscriptions() as server:
            async with client(server, max_utterance=0.5).stream() as s:
                s.push(tone(0.4))
                s.push(tone(0.4))
                dropped = s.dropped_samples
                s.finalize()
                s.push(tone(0.2))
                s.end_input()
                got = [t async for t in s]
            return server, got, dropped

    server, got, dropped = run(main)
    assert dropped == int(0.3 * 16000)
    assert [u.samples for u in server.uploads] == [8000, 3200]
    # the dropped audio still counts in the stream's time
    assert got[1].start == pytest.approx(0.8)


@pytest.mark.parametrize("status", [500, 429])
def test_an_error_status_is_status_nnn_without_the_key(status: int) -> None:
    async def main() -> tuple[ServiceError, int, int]:
        async with (
            FakeTranscriptions([Answer(status=status, echo_key=True)] * 3) as server,
            client(server).stream() as s,
        ):
            s.push(tone(0.2))
            s.finalize()
            with pytest.raises(ServiceError) as info:
                await collect(s, [])
            return info.value, len(server.uploads), s.retries

    error, uploads, retries = run(main)
    assert (uploads, retries) == (3, 2)  # 429 and 5xx are tried again, 3 attempts in all
    assert error.reason == f"status_{status}"
    assert error.service == "stt"
    assert "***" in str(error)
    assert KEY not in str(error)


def test_a_stalled_server_is_a_timeout() -> None:
    async def main() -> ServiceError:
        async with (
            FakeTranscriptions([Answer(stall=5.0)]) as server,
            client(server, timeout=0.3).stream() as s,
        ):
            s.push(tone(0.2))
            s.finalize()
            with pytest.raises(ServiceTimeout) as info:
                await collect(s, [])
            return info.value

    assert run(main).reason == "timeout"


def test_no_server_is_connect() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    async def main() -> ServiceError:
        stt = OpenAITranscriptionStt(f"http://127.0.0.1:{port}/v1", api_key=KEY)
        async with stt.stream() as s:
            s.push(tone(0.2))
            s.finalize()
            with pytest.raises(ServiceError) as info:
                await collect(s, [])
            return info.value

    error = run(main)
    assert error.reason == "connect"
    assert KEY not in str(error)


@pytest.mark.parametrize(
    "body", [b"<html>oops</html>", b'{"no_text": 1}', b'{"text": "a", "words": [{"word": 1}]}']
)
def test_a_bad_answer_is_bad_message(body: bytes) -> None:
    async def main() -> ServiceError:
        async with FakeTranscriptions([Answer(body=body)]) as server, client(server).stream() as s:
            s.push(tone(0.2))
            s.finalize()
            with pytest.raises(ServiceError) as info:
                await collect(s, [])
            return info.value

    assert run(main).reason == "bad_message"


def test_aclose_abandons_a_request_under_way() -> None:
    async def main() -> tuple[float, list[Transcript]]:
        loop = asyncio.get_running_loop()
        async with FakeTranscriptions([Answer(stall=5.0)]) as server:
            s = client(server).stream()
            got: list[Transcript] = []
            reader = asyncio.ensure_future(collect(s, got))
            s.push(tone(0.2))
            s.finalize()
            await asyncio.sleep(0.2)
            began = loop.time()
            await s.aclose()
            await reader
            return loop.time() - began, got

    took, got = run(main)
    assert took < 1.0
    assert got == []


def test_the_latency_is_measured_per_request() -> None:
    async def main() -> tuple[float | None, list[float]]:
        async with FakeTranscriptions([Answer(stall=0.2)]) as server:
            async with client(server).stream() as s:
                s.push(tone(1.0))
                s.finalize()
                s.end_input()
                _ = [t async for t in s]
            return s.last_latency, server.handling

    latency, handling = run(main)
    assert latency is not None
    assert latency >= handling[0] >= 0.2


def test_wav_bytes_is_a_riff_file() -> None:
    data = wav_bytes(np.arange(10, dtype=np.int16), 8000)
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WAVE"
    assert len(data) == 44 + 20


def test_bad_parameters_and_pushes_are_typed_errors() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAITranscriptionStt("ftp://x")
    with pytest.raises(ValueError, match="model"):
        OpenAITranscriptionStt("http://x", "")
    with pytest.raises(ValueError, match="response_format"):
        OpenAITranscriptionStt("http://x", response_format="srt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_utterance"):
        OpenAITranscriptionStt("http://x", max_utterance=0.0)
    stream = OpenAITranscriptionStt("http://x").stream()
    with pytest.raises(TypeError):
        stream.push(np.zeros(10, np.float64))
