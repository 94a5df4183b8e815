"""Call recording: off by default; a stereo WAV of what each side heard, cut at a barge-in;
old recordings deleted by the retention period; a failing disk never ends the call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the calls run over websockets")
pytest.importorskip("espeakng_loader", reason="the echo call speaks with espeak-ng")

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.aio.provider import play_call
from tests.serving import serving
from voxwire.agents.server import agent_server
from voxwire.aio.surface import CallSurface
from voxwire.protocols import Audio
from voxwire.recording import Recorder
from voxwire.sim.phone import FakePhone
from voxwire.sim.providers import TwilioSide
from voxwire.sim.speech import synthesize

LINE = 8000


async def tone_then_cut(call: CallSurface) -> None:
    """After 0.5 s of caller audio, 2 s of a 16 kHz tone; cut 1 s later (a barge-in)."""
    heard = 0
    t = np.arange(32000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    async for event in call:
        if isinstance(event, Audio):
            heard += 1
            if heard == 25:
                call.play(tone, 16000)
            elif heard == 75:
                call.clear()


def caller_audio(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * LINE)) / LINE
    return (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


async def one_call(url: str, audio: np.ndarray, tail: float = 0.3) -> int:
    peer = FakePhone(TwilioSide(strict=True))
    async with connect(url) as ws:

        async def send(message: str | bytes) -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)

        async def recv() -> str | bytes | None:
            try:
                return await ws.recv()
            except ConnectionClosed:
                return None

        await play_call(peer, send, recv, audio, tail=tail)
    return int(np.count_nonzero(peer.heard()))


def read(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        frames = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
        return w.getframerate(), frames


def active_seconds(channel: np.ndarray, rate: int) -> tuple[float, float, float]:
    """(first, last, total) seconds of 10 ms blocks with speech-level energy."""
    blocks = channel[: channel.size // 80 * 80].reshape(-1, 80).astype(np.float64)
    loud = np.flatnonzero(np.sqrt((blocks**2).mean(axis=1)) > 1000)
    if loud.size == 0:
        return 0.0, 0.0, 0.0
    return loud[0] * 80 / rate, (loud[-1] + 1) * 80 / rate, loud.size * 80 / rate


def test_a_call_is_recorded_as_each_side_heard_it(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "rec", retention_days=7)

    async def main() -> int:
        async with agent_server(tone_then_cut, "twilio", recorder=recorder) as url:
            return await one_call(url, caller_audio(2.5))

    heard = asyncio.run(asyncio.wait_for(main(), 30))
    (day,) = (tmp_path / "rec").iterdir()
    (path,) = day.iterdir()
    assert "-twilio-MZ" in path.name
    assert stat.S_IMODE(day.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (recorder.recorded, recorder.failures) == (1, 0)
    rate, frames = read(path)
    assert rate == LINE
    assert 2.3 <= frames.shape[0] / rate <= 3.2
    first, last, total = active_seconds(frames[:, 0], rate)
    assert first < 0.1, (first, last, total)
    assert total > 2.3, (first, last, total)  # the caller, all of it
    first, last, total = active_seconds(frames[:, 1], rate)
    # the agent's tone from 0.5 s, cut after about one second of it: 2 s were queued
    assert 0.35 <= first <= 0.8, (first, last, total)
    assert 0.7 <= total <= 1.3, (first, last, total)
    # and the phone heard the same second, not the two
    assert 0.6 * LINE <= heard <= 1.4 * LINE


def test_nothing_is_recorded_without_a_recorder(tmp_path: Path) -> None:
    os.chdir(tmp_path)

    async def main() -> int:
        async with agent_server(tone_then_cut, "twilio") as url:
            return await one_call(url, caller_audio(1.0))

    assert asyncio.run(asyncio.wait_for(main(), 30)) > 0
    assert list(tmp_path.rglob("*")) == []


def age(path: Path, days: float, now: float) -> None:
    os.utime(path, (now - days * 86400, now - days * 86400))


def test_retention_deletes_what_is_older_at_start_and_hourly(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    clock = [now]
    old_day, new_day = tmp_path / "2026-01-01", tmp_path / "2027-01-15"
    old_day.mkdir()
    new_day.mkdir()
    old, recent, other = old_day / "a.wav", new_day / "b.wav", new_day / "notes.txt"
    for path in (old, recent, other):
        path.write_bytes(b"RIFF")
    age(old, 8, now)
    age(recent, 7 - 900 / 86400, now)  # expires 15 minutes from now
    age(other, 100, now)  # not a recording: left alone
    recorder = Recorder(tmp_path, retention_days=7, clock=lambda: clock[0])
    assert not old.exists()
    assert not old_day.exists()
    assert recent.exists()
    assert other.exists()
    assert recorder.deleted == 1

    async def noop(call: CallSurface) -> None:
        return None

    class Quiet:
        codec = type("C", (), {"name": "twilio"})()
        started = None
        queued_samples = 0

        def __aiter__(self) -> Quiet:
            return self

        async def __anext__(self) -> None:
            raise StopAsyncIteration

    clock[0] = now + 1800  # "recent" expired 15 minutes ago
    asyncio.run(recorder.record(noop, Quiet()))  # type: ignore[arg-type]
    assert recent.exists(), "swept again within the hour"
    clock[0] = now + 3600
    asyncio.run(recorder.record(noop, Quiet()))  # type: ignore[arg-type]
    assert not recent.exists()
    assert recorder.deleted == 2


def test_a_recording_that_cannot_be_written_leaves_the_call_alone(tmp_path: Path) -> None:
    blocker = tmp_path / "rec"
    recorder = Recorder(blocker, retention_days=1)
    blocker.rmdir()
    blocker.write_text("a file where the day directories would go")

    async def main() -> int:
        async with agent_server(tone_then_cut, "twilio", recorder=recorder) as url:
            return await one_call(url, caller_audio(1.5))

    assert asyncio.run(asyncio.wait_for(main(), 30)) > 0.5 * LINE
    assert (recorder.recorded, recorder.failures) == (0, 1)


def test_a_long_call_stops_recording_at_the_bound(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, retention_days=1, max_seconds=1.0)

    async def main() -> int:
        async with agent_server(tone_then_cut, "twilio", recorder=recorder) as url:
            return await one_call(url, caller_audio(2.5))

    asyncio.run(asyncio.wait_for(main(), 30))
    (path,) = tmp_path.glob("*/*.wav")
    rate, frames = read(path)
    assert frames.shape[0] == rate


def test_serve_records_with_a_retention_and_refuses_a_bad_one(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "voxwire", "serve", "--protocol", "twilio", "--echo"]
    bad = subprocess.run(
        [*base, "--record", str(tmp_path), "--record-retention-days", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "--record-retention-days" in bad.stderr
    assert "Traceback" not in bad.stderr
    old = tmp_path / "2020-01-01" / "x.wav"
    old.parent.mkdir()
    old.write_bytes(b"RIFF")
    age(old, 2, time.time())
    # one utterance for the VAD (a phrase it splits would clear the first echo at a time
    # that depends on scheduling, and the echo heard would vary from run to run)
    speech = synthesize("Please book a table for two tonight.", LINE)
    with serving(
        "--protocol", "twilio", "--echo", "--port", "0", "--record", str(tmp_path),
        "--record-retention-days", "1",
    ) as server:  # fmt: skip
        speech_then_silence = np.concatenate([speech, np.zeros(3 * LINE, np.int16)])
        heard = asyncio.run(asyncio.wait_for(one_call(server.url, speech_then_silence), 30))
        assert heard > 0.8 * speech.size  # the echo of the caller's speech
    assert not old.exists()
    (path,) = tmp_path.glob("*/*.wav")
    rate, frames = read(path)
    _, _, caller = active_seconds(frames[:, 0], rate)
    _, _, echo = active_seconds(frames[:, 1], rate)
    assert caller > 0.4 * speech.size / LINE, (caller, echo)
    assert 0.8 * caller <= echo <= 1.2 * caller, (caller, echo)  # the echo of it
