"""The outbound path resamples once per play, paces, then visits the codec once per frame."""

from __future__ import annotations

import asyncio
import json

import numpy as np

import voxwire
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import Call, Limits, run_call
from voxwire.errors import ConnectionClosed
from voxwire.protocols import CallStarted, Outbound
from voxwire.protocols.twilio import TwilioCodec
from voxwire.sim.providers import TwilioSide


class CountingCodec(TwilioCodec):
    """Twilio, counting the outbound visits: resampling and per-frame encoding."""

    def __init__(self) -> None:
        super().__init__(resampler=voxwire.Resampler)
        self.line_pcm_calls = 0
        self.send_audio_sizes: list[int] = []

    def line_pcm(self, pcm: object, sample_rate: int | None = None) -> np.ndarray:
        self.line_pcm_calls += 1
        return super().line_pcm(pcm, sample_rate)

    def send_audio(self, pcm: object, sample_rate: int | None = None) -> list[Outbound]:
        self.send_audio_sizes.append(len(pcm))  # type: ignore[arg-type]
        return super().send_audio(pcm, sample_rate)


class OneStart:
    """Hands out the start message, then waits until the call closes it."""

    def __init__(self) -> None:
        self.sent: list[Outbound] = []
        self._start: list[str] = TwilioSide(strict=True).opening()
        self._closed = asyncio.Event()

    async def recv(self) -> str | bytes:
        if self._start:
            return self._start.pop()
        await self._closed.wait()
        raise ConnectionClosed(1000, "closed")

    async def send(self, message: Outbound) -> None:
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self._closed.set()


def test_each_paced_frame_visits_the_codec_once_and_each_play_resamples_once() -> None:
    codec = CountingCodec()
    transport = OneStart()
    plays = 3
    chunk = np.zeros(24_000 * 60 // 1000, dtype=np.int16)  # 60 ms at 24 kHz per play

    async def handler(call: Call) -> None:
        async for event in call:
            if isinstance(event, CallStarted):
                for _ in range(plays):
                    call.play(chunk, 24_000)
                call.flush()
                while call.queued_samples:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.05)
                return

    async def main() -> None:
        pacer = Pacer()
        try:
            await asyncio.wait_for(
                run_call(codec, transport, handler, pacer=pacer, limits=Limits()), 10.0
            )
        finally:
            await pacer.aclose()

    asyncio.run(main())
    frame = 8000 * codec.frame_ms // 1000
    frames = plays * 60 // codec.frame_ms
    assert codec.line_pcm_calls == plays  # resampled once per play, before pacing
    assert codec.send_audio_sizes == [frame] * frames  # then once per paced frame
    media = [json.loads(m) for m in transport.sent if isinstance(m, str)]
    assert [m["event"] for m in media] == ["media"] * frames
