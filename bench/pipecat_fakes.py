"""pipecat 1.14's standard Twilio pipeline with fake STT, LLM and TTS of fixed latencies.

Runs in the pipecat virtual environment (not voxwire's)::

    .cache/pipecat-venv/bin/python bench/pipecat_fakes.py --port 8790 --reply "Sure."

It prints ``ready ws://127.0.0.1:PORT/ws`` once it listens, then one JSON line per
finished call (the times its fakes saw, on the monotonic clock), and stops on SIGTERM.

The pipeline is the one pipecat's Twilio examples build, with the three services
replaced by fakes written here (they sleep the same amounts as voxwire's
:mod:`voxwire.services.fake`):

    transport.input() -> FixedLatencyStt -> user aggregator (Silero VAD) ->
    FixedLatencyLlm -> FixedLatencyTts -> transport.output() -> assistant aggregator

* :class:`FixedLatencyStt` hears the audio itself, as ``voxwire.services.fake.FakeStt``
  does: a 10 ms block above -45 dBFS is speech, and ``latency`` seconds of audio without
  speech after it end the utterance with a finalized :class:`TranscriptionFrame` of the
  next scripted text.
* :class:`FixedLatencyLlm` answers every context with the reply text, token by token:
  the first ``first_token`` seconds after the request, then one every ``per_token``.
* :class:`FixedLatencyTts` is a :class:`pipecat.services.tts_service.TTSService`: its
  ``run_tts`` sleeps ``first_audio`` seconds and yields a harmonic tone per word at
  three words a second, in 200 ms chunks, faster than real time.

The user turn ends on the VAD's stop (``VADParams.stop_secs``, ``--vad-stop``) and the
final transcript (``SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0)``): no
extra wait, so pipecat's endpoint delay is its VAD stop time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

# pipecat, fastapi and uvicorn are only in the pipecat virtual environment
from fastapi import FastAPI, WebSocket  # type: ignore[import-not-found]
from loguru import logger  # type: ignore[import-not-found]
from pipecat.audio.vad.silero import SileroVADAnalyzer  # type: ignore[import-not-found]
from pipecat.audio.vad.vad_analyzer import VADParams  # type: ignore[import-not-found]
from pipecat.frames.frames import (  # type: ignore[import-not-found]
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # type: ignore[import-not-found]
from pipecat.pipeline.runner import PipelineRunner  # type: ignore[import-not-found]
from pipecat.pipeline.task import PipelineParams, PipelineTask  # type: ignore[import-not-found]
from pipecat.processors.aggregators.llm_context import (  # type: ignore[import-not-found]
    LLMContext,
)
from pipecat.processors.aggregators.llm_response_universal import (  # type: ignore[import-not-found]
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import (  # type: ignore[import-not-found]
    FrameDirection,
    FrameProcessor,
)
from pipecat.runner.utils import parse_telephony_websocket  # type: ignore[import-not-found]
from pipecat.serializers.twilio import TwilioFrameSerializer  # type: ignore[import-not-found]
from pipecat.services.settings import TTSSettings  # type: ignore[import-not-found]
from pipecat.services.tts_service import TTSService  # type: ignore[import-not-found]
from pipecat.transports.websocket.fastapi import (  # type: ignore[import-not-found]
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.turns.user_stop import (  # type: ignore[import-not-found]
    SpeechTimeoutUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies  # type: ignore[import-not-found]

_TOKEN = re.compile(r"\s*(?:[\w'\u2019]+|[^\w\s])|\s+")
_WORD = re.compile(r"\S+")


def tokens(text: str) -> list[str]:
    """Word-ish tokens that keep their leading spaces (as voxwire's fake model streams)."""
    return _TOKEN.findall(text)


class FixedLatencyStt(FrameProcessor):  # type: ignore[misc]
    """Finds utterances in the audio by level; finalizes each ``latency`` s after it."""

    def __init__(
        self,
        transcripts: list[str],
        *,
        latency: float = 0.1,
        threshold_dbfs: float = -45.0,
        record: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._texts = transcripts
        self._latency = latency
        self._threshold = (32768.0 * 10 ** (threshold_dbfs / 20)) ** 2
        self._partial = np.zeros(0, np.int16)
        self._samples = 0  # audio heard, in samples
        self._last = 0  # sample just after the last speech block
        self._in_speech = False
        self._count = 0
        self._record = record if record is not None else {}

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self._hear(frame)

    async def _hear(self, frame: InputAudioRawFrame) -> None:
        rate = frame.sample_rate
        block = rate // 100
        pcm = np.frombuffer(frame.audio, dtype=np.int16)
        data = np.concatenate((self._partial, pcm)) if len(self._partial) else pcm
        whole = len(data) // block * block
        self._partial = data[whole:].copy()
        if not whole:
            return
        x = data[:whole].reshape(-1, block).astype(np.float64)
        energy = np.einsum("ij,ij->i", x, x) / block
        base = self._samples
        self._samples += whole
        for i, e in enumerate(energy):
            end = base + (i + 1) * block
            if e > self._threshold:
                self._in_speech = True
                self._last = end
            elif self._in_speech and end - self._last >= round(self._latency * rate):
                self._in_speech = False
                text = self._texts[self._count % len(self._texts)]
                self._count += 1
                self._record.setdefault("stt_final", []).append(time.monotonic())
                await self.push_frame(
                    TranscriptionFrame(
                        text=text,
                        user_id="caller",
                        timestamp=str(time.time()),
                        finalized=True,
                    )
                )


class FixedLatencyLlm(FrameProcessor):  # type: ignore[misc]
    """Streams ``reply`` for every context: first token after ``first_token`` s."""

    def __init__(
        self,
        reply: str,
        *,
        first_token: float = 0.2,
        per_token: float = 0.02,
        record: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._tokens = tokens(reply)
        self._first = first_token
        self._per = per_token
        self._task: asyncio.Task[None] | None = None
        self._record = record if record is not None else {}

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            self._record.setdefault("llm_request", []).append(time.monotonic())
            self._cancel()
            self._task = asyncio.create_task(self._stream())
            return
        if isinstance(frame, (InterruptionFrame, EndFrame)):
            self._cancel()
        await self.push_frame(frame, direction)

    def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _stream(self) -> None:
        await self.push_frame(LLMFullResponseStartFrame())
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, token in enumerate(self._tokens):
            due = start + self._first + i * self._per
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self.push_frame(LLMTextFrame(token))
        await self.push_frame(LLMFullResponseEndFrame())


class FixedLatencyTts(TTSService):  # type: ignore[misc]
    """A TTS service whose first audio comes ``first_audio`` s after its text."""

    def __init__(
        self, *, first_audio: float = 0.1, record: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=None, language=None),
            **kwargs,
        )
        self._first_audio = first_audio
        self._record = record if record is not None else {}

    def can_generate_metrics(self) -> bool:
        return False

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        self._record.setdefault("tts_text", []).append(time.monotonic())
        await asyncio.sleep(self._first_audio)
        rate = self.sample_rate
        audio = speech(text, rate)
        chunk = rate // 5  # 200 ms
        for i in range(0, len(audio), chunk):
            yield TTSAudioRawFrame(
                audio=audio[i : i + chunk].tobytes(),
                sample_rate=rate,
                num_channels=1,
                context_id=context_id,
            )


def speech(text: str, rate: int, words_per_second: float = 3.0) -> np.ndarray[Any, Any]:
    """A voiced tone per word (150 Hz, five harmonics), a short gap between words."""
    words = _WORD.findall(text) or [""]
    n = round(rate / words_per_second)
    voiced = round(n * 0.8)
    t = np.arange(voiced) / rate
    tone = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 6))
    tone = tone * np.hanning(voiced) * (0.25 * 32767 / np.max(np.abs(tone)))
    one = np.concatenate([tone, np.zeros(n - voiced)]).astype(np.int16)
    return np.tile(one, len(words))


def build_app(reply: str, transcripts: list[str], vad_stop: float) -> Any:
    """The FastAPI app: one pipeline per Twilio media stream on ``/ws``."""
    app = FastAPI()

    @app.websocket("/ws")  # type: ignore[untyped-decorator, unused-ignore]
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        _, call_data = await parse_telephony_websocket(websocket)
        serializer = TwilioFrameSerializer(
            stream_sid=call_data["stream_id"],
            call_sid=call_data["call_id"],
            account_sid="AC" + "0" * 32,
            auth_token="unused",
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        record: dict[str, Any] = {"call": uuid.uuid4().hex}
        context = LLMContext([{"role": "system", "content": "Be brief."}])
        aggregators = LLMContextAggregatorPair(
            context,
            user_params=LLMUserAggregatorParams(
                vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=vad_stop)),
                user_turn_strategies=UserTurnStrategies(
                    stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)]
                ),
            ),
        )
        pipeline = Pipeline(
            [
                transport.input(),
                FixedLatencyStt(transcripts, record=record),
                aggregators.user(),
                FixedLatencyLlm(reply, record=record),
                FixedLatencyTts(sample_rate=16000, record=record),
                transport.output(),
                aggregators.assistant(),
            ]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000),
        )

        @transport.event_handler("on_client_disconnected")  # type: ignore[untyped-decorator]
        async def on_client_disconnected(transport: Any, client: Any) -> None:
            await task.cancel()

        runner = PipelineRunner(handle_sigint=False, force_gc=True)
        try:
            await runner.run(task)
        finally:
            print(json.dumps(record), flush=True)

    return app


async def serve(port: int, reply: str, transcripts: list[str], vad_stop: float) -> None:
    """Serve until SIGTERM; print ``ready URL`` once listening."""
    import socket

    import uvicorn  # type: ignore[import-not-found, unused-ignore]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(reply, transcripts, vad_stop), log_level="warning", ws="websockets"
    )
    server = uvicorn.Server(config)
    # uvicorn turns SIGTERM into a graceful shutdown (pipelines cancelled, sockets closed)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"ready ws://127.0.0.1:{bound}/ws", flush=True)

    announcer = asyncio.create_task(announce())
    await server.serve(sockets=[sock])
    announcer.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="Sure. We open at nine.")
    parser.add_argument(
        "--transcripts",
        default="what are your opening hours?|sorry to interrupt you there",
        help="the scripted transcripts, separated by |",
    )
    parser.add_argument("--vad-stop", type=float, default=0.2, help="VADParams.stop_secs")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    asyncio.run(serve(args.port, args.reply, args.transcripts.split("|"), args.vad_stop))


if __name__ == "__main__":
    main()
