"""Call recording, off unless asked for, with a retention period that deletes old files.

voxwire writes no audio anywhere by default. :class:`Recorder` (``voxwire serve --record
DIR --record-retention-days N``) writes each call to one stereo WAV file (PCM16 at the
call's line rate): the left channel is the caller's
audio as the agent received it, the right channel the agent's audio as the caller heard
it. The right channel is aligned to the left by the caller's audio clock (a reply starts
where the caller's audio stood when it was queued, to within one packet), and a
barge-in's :meth:`~voxwire.aio.surface.CallSurface.clear` cuts it back to what had played,
so a reply the caller interrupted is recorded as far as it was heard.

Files go to ``DIR/YYYY-MM-DD/<UTC time>-<protocol>-<stream id>.wav`` (the date and time of
the call's start; the stream id reduced to letters, digits, ``-`` and ``_``), directories
``0700`` and files ``0600``. A file holds at most ``max_seconds`` of audio (4 h by
default; the rest of a longer call is not recorded, and the log says so); what is not
yet written is at most ``1 s`` plus the agent's queued audio. A recording that cannot be
written (disk full, permissions) is logged and counted in :attr:`Recorder.failures`
and dropped; the call goes on.

Retention: :meth:`Recorder.sweep` deletes the recordings older than ``retention_days``
(by modification time, which is the end of the call) and the day directories it
empties. It runs when the recorder is made and then at the start of a call at most once
an hour, so a server that takes calls keeps no recording longer than the period plus an
hour; a server that takes no calls deletes nothing until it restarts or the next call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from voxwire._types import PCM as PCM
from voxwire.aio.surface import CallSurface
from voxwire.protocols.events import Audio, CallStarted, Event
from voxwire.resample import Resampler

__all__ = ["Recorder", "RecordingCall"]

log = logging.getLogger("voxwire.recording")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
SWEEP_EVERY = 3600.0


class _Track:
    """One call's stereo recording: caller left, agent right, written as it settles."""

    def __init__(self, path: Path, rate: int, max_seconds: float) -> None:
        self.path = path
        self.rate = rate
        self.max_frames = int(max_seconds * rate)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115 (closed in close())
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self.written = 0  # frames on disk
        self.caller = np.zeros(0, np.int16)  # caller samples from ``written`` on
        self.agent = np.zeros(0, np.int16)  # agent samples from ``written`` on
        self.full = False

    @property
    def caller_end(self) -> int:
        return self.written + self.caller.size

    @property
    def agent_end(self) -> int:
        return self.written + self.agent.size

    def add_caller(self, pcm: PCM) -> None:
        if self.full:
            return
        self.caller = np.concatenate([self.caller, pcm])
        self._settle()

    def add_agent(self, pcm: PCM, *, idle: bool) -> None:
        if self.full:
            return
        if idle and self.agent_end < self.caller_end:  # a reply starts now, not after the last
            pad = np.zeros(self.caller_end - self.agent_end, np.int16)
            self.agent = np.concatenate([self.agent, pad])
        self.agent = np.concatenate([self.agent, pcm])

    def cut_agent(self, unplayed: int) -> None:
        """Drop the last ``unplayed`` agent samples (cleared before they played)."""
        keep = max(0, self.agent.size - unplayed)
        self.agent = self.agent[:keep]

    def _settle(self, final: bool = False) -> None:
        # what lies a second behind the caller's audio has played: it is written
        upto = self.caller_end if final else self.caller_end - self.rate
        upto = max(upto, self.agent_end) if final else upto
        n = upto - self.written
        if n <= 0 or self.full:
            return
        room = self.max_frames - self.written
        if n > room:
            n = room
            self.full = True
            log.warning(
                "recording %s reached its %d s bound", self.path.name, self.max_frames // self.rate
            )
        frames = np.zeros((n, 2), np.int16)
        left, right = self.caller[:n], self.agent[:n]
        frames[: left.size, 0] = left
        frames[: right.size, 1] = right
        self._wav.writeframes(frames.tobytes())
        self.written += n
        self.caller, self.agent = self.caller[n:], self.agent[n:]
        if self.full:
            self.caller = self.caller[:0]
            self.agent = self.agent[:0]

    def close(self) -> None:
        try:
            self._settle(final=True)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close the file with what it holds (after a write failed)."""
        try:
            self._wav.close()
        finally:
            self._file.close()


class RecordingCall:
    """A call as its handler sees it, with the audio both ways copied to a recording.

    Everything is the wrapped call's; iterating copies the caller's audio, :meth:`play`
    the agent's, :meth:`clear` cuts the agent's track back to what had played.
    """

    def __init__(self, call: CallSurface, recorder: Recorder) -> None:
        self._call = call
        self._recorder = recorder
        self._track: _Track | None = None
        self._resamplers: dict[int, Resampler[np.int16]] = {}
        self._line_rate = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for event in self._call:
            if isinstance(event, CallStarted) and self._line_rate == 0:
                self._line_rate = event.media_format.sample_rate
                self._track = self._recorder._open(self._call, event, self._line_rate)
            elif isinstance(event, Audio) and self._track is not None:
                try:
                    self._track.add_caller(self._to(event.pcm, event.sample_rate))
                except (OSError, ValueError) as exc:
                    self._failed(exc)
            yield event

    def _to(self, pcm: object, rate: int) -> PCM:
        samples = np.frombuffer(pcm, np.int16) if isinstance(pcm, bytes | bytearray) else pcm
        samples = np.asarray(samples, np.int16)
        if rate == self._line_rate:
            return samples
        resampler = self._resamplers.get(rate)
        if resampler is None:
            resampler = self._resamplers[rate] = Resampler(rate, self._line_rate)
        return np.asarray(resampler.process(samples), np.int16)

    def play(self, pcm: object, sample_rate: int | None = None) -> None:
        idle = self._call.queued_samples == 0
        self._call.play(pcm, sample_rate)
        if self._track is not None:
            try:
                self._track.add_agent(self._to(pcm, sample_rate or self._line_rate), idle=idle)
            except (OSError, ValueError) as exc:
                self._failed(exc)

    def clear(self) -> None:
        unplayed = self._call.queued_samples
        self._call.clear()
        if self._track is not None:
            self._track.cut_agent(unplayed)

    def _failed(self, exc: BaseException) -> None:
        self._recorder._failed(self._track, exc)
        track, self._track = self._track, None
        if track is not None:
            with contextlib.suppress(OSError, ValueError):
                track.abandon()

    def _finish(self) -> None:
        if self._track is not None:
            track, self._track = self._track, None
            try:
                track.close()
            except (OSError, ValueError) as exc:
                self._recorder._failed(track, exc)


class Recorder:
    """Records calls to ``directory``, keeping them ``retention_days`` (module docstring).

    ``clock`` gives the wall-clock time (seconds since the epoch) for file names and
    the retention sweep.
    """

    def __init__(
        self,
        directory: str | Path,
        retention_days: float,
        *,
        max_seconds: float = 4 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not retention_days > 0:
            raise ValueError(f"retention_days must be > 0, got {retention_days}")
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.directory = Path(directory)
        self.retention_days = retention_days
        self.max_seconds = max_seconds
        self.clock = clock
        self.recorded = 0
        self.failures = 0
        self.deleted = 0
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._last_sweep = 0.0
        self.sweep()

    def counts(self) -> dict[str, int]:
        """Calls ``recorded``, recordings that ``failed``, old recordings ``deleted``."""
        return {"recorded": self.recorded, "failed": self.failures, "deleted": self.deleted}

    async def record(self, handler: Callable[[Any], Awaitable[None]], call: CallSurface) -> None:
        """Run ``handler`` on ``call`` with its audio recorded."""
        if self.clock() - self._last_sweep >= SWEEP_EVERY:
            self.sweep()
        wrapped = RecordingCall(call, self)
        try:
            await handler(wrapped)
        finally:
            wrapped._finish()

    def sweep(self) -> int:
        """Delete the recordings older than the retention period; how many were."""
        now = self.clock()
        self._last_sweep = now
        cutoff = now - self.retention_days * 86400.0
        deleted = 0
        for path in sorted(self.directory.glob("*/*.wav")):
            deleted += self._delete_if_older(path, cutoff)
        for day in self.directory.iterdir():
            if day.is_dir() and not any(day.iterdir()):
                day.rmdir()
        if deleted:
            log.info("deleted %d recording(s) older than %g days", deleted, self.retention_days)
        self.deleted += deleted
        return deleted

    @staticmethod
    def _delete_if_older(path: Path, cutoff: float) -> int:
        try:
            if path.stat().st_mtime >= cutoff:
                return 0
            path.unlink()
        except OSError as exc:
            log.warning("cannot delete the old recording %s: %s", path.name, exc)
            return 0
        return 1

    def _open(self, call: CallSurface, started: CallStarted, rate: int) -> _Track | None:
        when = datetime.fromtimestamp(self.clock(), timezone.utc)
        stream = _UNSAFE.sub("_", started.stream_id)[:64] or "call"
        stem = self.directory / f"{when:%Y-%m-%d}" / f"{when:%H%M%S}-{call.codec.name}-{stream}"
        for attempt in range(1, 100):
            path = stem.with_name(stem.name + (f"-{attempt}" if attempt > 1 else "") + ".wav")
            try:
                track = _Track(path, rate, self.max_seconds)
            except FileExistsError:
                continue  # the same stream id started twice in one second
            except (OSError, ValueError) as exc:
                self._failed(None, exc)
                return None
            self.recorded += 1
            return track
        self._failed(None, FileExistsError(f"{stem.name}: 99 recordings in one second"))
        return None

    def _failed(self, track: _Track | None, exc: BaseException) -> None:
        self.failures += 1
        where = track.path.name if track is not None else str(self.directory)
        log.error("recording %s failed, the call goes on unrecorded: %s", where, exc)
