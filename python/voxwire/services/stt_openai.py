"""Per-utterance speech-to-text over the OpenAI transcription endpoint.

:class:`OpenAITranscriptionStt` implements :class:`~voxwire.services.base.SpeechToText` on
``POST {base_url}/audio/transcriptions`` (OpenAI API reference, "Create transcription"),
as OpenAI serves it and as the servers that copy the endpoint do (faster-whisper servers,
whisper.cpp's server, vLLM, LocalAI). It needs aiohttp.

It is **not streaming**. Audio pushed accumulates; :meth:`~OpenAITranscriptionStream.finalize`
(the voice agent sends it at the end of each user turn) posts the utterance as a WAV file
and yields exactly one final :class:`~voxwire.services.base.Transcript`
(``from_finalize=True``); there are no interim results. The whole request happens after
the turn has ended, so the reply waits for: the WAV encoding and the upload (the client's
part, about a millisecond for a few seconds of 16 kHz audio on 127.0.0.1), and the
server's transcription of the whole utterance (hundreds of milliseconds to seconds for
hosted models). A streaming recogniser (:mod:`voxwire.services.stt_deepgram`) has the
text ready when the turn ends. :attr:`OpenAITranscriptionStream.last_latency` is the time
of the last request, from ``finalize`` to the result.

The request is ``multipart/form-data`` with ``file`` (``utterance.wav``, PCM16 mono at
:attr:`OpenAITranscriptionStt.sample_rate`), ``model``, ``response_format`` and, with
``verbose_json``, ``timestamp_granularities[]=word`` for word timings (``whisper-1``
supports them; ``gpt-4o-transcribe`` models take only ``json`` or ``text``). Word times in
the answer are seconds of the utterance; the client shifts them to seconds of the stream.

An utterance is bounded: audio past ``max_utterance`` seconds is dropped and counted
(:attr:`OpenAITranscriptionStream.dropped_samples`); OpenAI takes files up to 25 MB.

Errors are raised from the iteration as :class:`~voxwire.errors.ServiceError`
(``service="stt"``), ``reason`` one of ``status_NNN`` (the message has the server's error
text), ``connect``, ``timeout`` (:class:`~voxwire.errors.ServiceTimeout`: no answer within
``timeout``), ``closed`` (the connection broke) and ``bad_message`` (the answer is not the
documented JSON). The API key is sent only in ``Authorization: Bearer KEY``; it is never
in an error message (a server that echoes it has it replaced by ``***``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import io
import json
import logging
import wave
from collections.abc import AsyncIterator
from typing import Any, Final, Literal

import numpy as np

from voxwire.errors import ServiceError, ServiceTimeout
from voxwire.services.base import PCM, Outbox, StreamMixin, Transcript, Word
from voxwire.services.http import HttpStatusError, warm_up
from voxwire.services.retry import RetryPolicy, parse_retry_after, with_retries

__all__ = ["OpenAITranscriptionStream", "OpenAITranscriptionStt", "wav_bytes"]

log = logging.getLogger(__name__)

ResponseFormat = Literal["json", "verbose_json"]

_ERROR_TEXT: Final = 300
_MAX_BODY: Final = 4 << 20


def wav_bytes(pcm: PCM, sample_rate: int) -> bytes:
    """``pcm`` as a WAV file (RIFF, PCM16 mono)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return buf.getvalue()


async def _read_body(response: Any) -> bytes:
    """The whole answer, at most ``_MAX_BODY`` bytes (a cut answer raises)."""
    body = b""
    while len(body) < _MAX_BODY:
        data = await response.content.read(_MAX_BODY - len(body))
        if not data:
            break
        body += data
    return body


def _bad(message: str) -> ServiceError:
    return ServiceError("stt", "bad_message", f"stt: {message}")


def _time(obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"a word's {key!r} must be a number")
    return float(value)


class OpenAITranscriptionStt:
    """Speech-to-text by posting each utterance to ``{base_url}/audio/transcriptions``.

    Parameters
    ----------
    base_url
        The API root: ``https://api.openai.com/v1``, or a compatible server's.
    model
        ``"whisper-1"``, ``"gpt-4o-transcribe"``, ``"gpt-4o-mini-transcribe"``, or the
        server's own model name.
    api_key
        Sent as ``Authorization: Bearer KEY``; ``None`` sends no such header.
    sample_rate
        The rate :meth:`OpenAITranscriptionStream.push` takes and the WAV declares.
    response_format
        ``"verbose_json"`` (word timings) or ``"json"`` (text only).
    language, prompt
        Sent as the form fields of the same names when set.
    timeout
        Seconds for one request, from the upload to the whole answer.
    connect_timeout
        Seconds for the connection.
    max_utterance
        Seconds of audio one utterance keeps; the rest is dropped and counted.
    retry
        When a request that failed before its answer is tried again
        (:class:`~voxwire.services.retry.RetryPolicy`; default: up to 3 attempts on 429,
        5xx and a refused connection, within 3 s).

    Raises
    ------
    ServiceError
        ``unavailable``: aiohttp is not installed.
    ValueError
        A parameter is out of range.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "whisper-1",
        *,
        api_key: str | None = None,
        sample_rate: int = 16000,
        response_format: ResponseFormat = "verbose_json",
        language: str | None = None,
        prompt: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        max_utterance: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if importlib.util.find_spec("aiohttp") is None:
            raise ServiceError("stt", "unavailable", "stt: pip install aiohttp")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        if isinstance(sample_rate, bool) or not 8000 <= sample_rate <= 48000:
            raise ValueError(f"sample_rate must be in [8000, 48000], got {sample_rate!r}")
        if response_format not in ("json", "verbose_json"):
            raise ValueError(f"response_format must be json or verbose_json: {response_format!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be > 0")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        if not 0.5 <= max_utterance <= 600:
            raise ValueError(f"max_utterance must be in [0.5, 600] seconds: {max_utterance!r}")
        self.url = base_url.rstrip("/") + "/audio/transcriptions"
        self.model = model
        self._api_key = api_key
        self._rate = sample_rate
        self.response_format: ResponseFormat = response_format
        self.language = language
        self.prompt = prompt
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_utterance = float(max_utterance)
        self.retry = retry if retry is not None else RetryPolicy()
        self.retries = 0
        """Requests tried again so far."""

    def __repr__(self) -> str:
        return f"OpenAITranscriptionStt(url={self.url!r}, model={self.model!r})"

    @property
    def sample_rate(self) -> int:
        """The rate :meth:`OpenAITranscriptionStream.push` takes, in Hz."""
        return self._rate

    def stream(self) -> OpenAITranscriptionStream:
        """Open a stream (one per call): one request per utterance."""
        return OpenAITranscriptionStream(self)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


class OpenAITranscriptionStream(StreamMixin):
    """One call's utterances; see :class:`OpenAITranscriptionStt` and the module notes."""

    def __init__(self, stt: OpenAITranscriptionStt) -> None:
        self._stt = stt
        self._out: Outbox[Transcript] = Outbox()
        self._chunks: list[PCM] = []
        self._held = 0  # samples in _chunks
        self._start_at = 0  # the stream position of the utterance's first sample
        self._jobs: asyncio.Queue[tuple[PCM, int, float] | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._closed = False
        self._max = int(stt.max_utterance * stt.sample_rate)
        self.dropped_samples = 0
        """Samples past ``max_utterance`` that were not sent."""
        self.requests = 0
        """Requests made (retries included)."""
        self.retries = 0
        """Requests tried again (each failed before its answer)."""
        self.last_latency: float | None = None
        """Seconds from the last ``finalize`` to its result."""

    def push(self, pcm: PCM) -> None:
        """Add audio to the utterance (mono int16; never blocks).

        Raises
        ------
        TypeError
            ``pcm`` is not a 1-D int16 array.
        """
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError("pcm must be a 1-D numpy int16 array")
        if self._ended or self._closed or pcm.size == 0:
            return
        room = self._max - self._held
        if pcm.size > room:
            self.dropped_samples += pcm.size - room
            pcm = pcm[:room]
        if pcm.size:
            self._chunks.append(pcm.copy())
            self._held += pcm.size
        if self._jobs is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return
            self._queue()  # the session opens its connection now, while the caller speaks

    def finalize(self) -> None:
        """Post the utterance: one final result follows (``text=""`` for no audio)."""
        if self._ended or self._closed:
            return
        self._cut()

    def end_input(self) -> None:
        """Post what is held (if anything), then end the iteration after its result."""
        if self._ended or self._closed:
            return
        if self._held:
            self._cut()
        self._ended = True
        self._queue().put_nowait(None)

    async def aclose(self) -> None:
        """Stop now: a request under way is abandoned, results not yet out are dropped."""
        self._closed = True
        self._out.drop()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def __aiter__(self) -> AsyncIterator[Transcript]:
        return self

    async def __anext__(self) -> Transcript:
        return await self._out.get()

    def _queue(self) -> asyncio.Queue[tuple[PCM, int, float] | None]:
        if self._jobs is None:
            self._jobs = asyncio.Queue()
            self._task = asyncio.ensure_future(self._run(self._jobs))
        return self._jobs

    def _cut(self) -> None:
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        # the stream position counts the audio pushed, dropped samples included
        start = self._start_at
        self._start_at += self._held + self.dropped_samples
        self._chunks, self._held, self.dropped_samples = [], 0, 0
        self._queue().put_nowait((pcm, start, asyncio.get_running_loop().time()))

    async def _run(self, jobs: asyncio.Queue[tuple[PCM, int, float] | None]) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=self._stt.timeout, sock_connect=self._stt.connect_timeout
        )
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                warm = asyncio.ensure_future(self._warm(session))
                try:
                    await self._jobs_loop(session, jobs)
                finally:
                    warm.cancel()
                    await asyncio.wait([warm])
        except asyncio.CancelledError:
            self._out.drop()
            raise
        except ServiceError as e:
            log.warning("%s", e)
            self._out.finish(e)
        else:
            self._out.finish()

    async def _warm(self, session: Any) -> None:
        """Open the connection before the first utterance ends (a failure is only logged:
        the utterance's own request reports it)."""
        stt = self._stt
        try:
            await warm_up(
                session,
                stt.url.removesuffix("/audio/transcriptions") + "/models",
                {**stt._headers(), "Accept": "application/json"},
                service="stt",
                seconds=stt.connect_timeout + stt.timeout,
                scrub=stt._redact,
            )
        except ServiceError as e:
            log.debug("%s", e)

    async def _jobs_loop(
        self, session: Any, jobs: asyncio.Queue[tuple[PCM, int, float] | None]
    ) -> None:
        while (job := await jobs.get()) is not None:
            pcm, start, asked = job
            rate = self._stt.sample_rate
            t0 = start / rate
            if pcm.size == 0:
                result = Transcript("", True, t0, t0, from_finalize=True)
            else:
                result = await with_retries(
                    self._stt.retry,
                    functools.partial(self._post, session, pcm, t0),
                    fresh=lambda: not self._closed,
                    on_retry=self._retried,
                )
            self.last_latency = asyncio.get_running_loop().time() - asked
            self._out.put(result)

    def _retried(self, error: ServiceError, wait: float) -> None:
        self.retries += 1
        self._stt.retries += 1

    async def _post(self, session: Any, pcm: PCM, t0: float) -> Transcript:
        import aiohttp

        stt = self._stt
        form = aiohttp.FormData()
        form.add_field(
            "file",
            wav_bytes(pcm, stt.sample_rate),
            filename="utterance.wav",
            content_type="audio/wav",
        )
        form.add_field("model", stt.model)
        form.add_field("response_format", stt.response_format)
        if stt.response_format == "verbose_json":
            form.add_field("timestamp_granularities[]", "word")
        if stt.language:
            form.add_field("language", stt.language)
        if stt.prompt:
            form.add_field("prompt", stt.prompt)
        self.requests += 1
        try:
            async with session.post(stt.url, data=form, headers=stt._headers()) as response:
                body = await _read_body(response)
                if response.status != 200:
                    text = stt._redact(body.decode("utf-8", "replace"))[:_ERROR_TEXT]
                    raise HttpStatusError(
                        "stt",
                        response.status,
                        f"stt: the server answered HTTP {response.status}: {text}",
                        parse_retry_after(response.headers.get("Retry-After")),
                    )
        except TimeoutError:
            raise ServiceTimeout("stt", stt.timeout) from None
        except aiohttp.ClientConnectorError as e:
            raise ServiceError(
                "stt", "connect", f"stt: cannot connect to {stt.url}: {type(e).__name__}"
            ) from None
        except aiohttp.ClientError as e:
            raise ServiceError(
                "stt", "closed", f"stt: the connection broke: {type(e).__name__}"
            ) from None
        return self._decode(body, t0, pcm.size / stt.sample_rate)

    def _decode(self, body: bytes, t0: float, duration: float) -> Transcript:
        try:
            answer = json.loads(body)
        except ValueError:
            raise _bad(f"the answer is not JSON: {body[:200]!r}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise _bad("the answer has no text")
        words_in = answer.get("words") or []
        if not isinstance(words_in, list):
            raise _bad("words must be a list")
        words: list[Word] = []
        for w in words_in:
            if not isinstance(w, dict) or not isinstance(w.get("word"), str):
                raise _bad("a word must be an object with a word")
            words.append(Word(w["word"], t0 + _time(w, "start"), t0 + _time(w, "end")))
        return Transcript(
            text=answer["text"].strip(),
            final=True,
            start=t0,
            end=t0 + duration,
            words=tuple(words),
            from_finalize=True,
        )
