"""The echo agent: listen with the VAD, play each utterance back, stop on barge-in.

:class:`EchoAgent` is sans-I/O. It takes the caller's audio at the pipeline rate and the
played/cleared marks of its replies, and returns actions (:class:`Play`, :class:`Mark`,
:class:`Clear`) for the transport to carry out; it never reads a clock, so a test drives it
sample by sample. :func:`echo_handler` runs it on a :class:`voxwire.aio.Call`.

Turn-taking
-----------
* **Listening.** Every chunk goes through a :class:`voxwire.vad.Vad`; the agent keeps the
  last ``max_utterance`` seconds of audio. When the VAD ends an utterance (``hangover_ms``
  of non-speech after its last speech frame), the agent plays back the audio from
  ``pre_roll`` before the utterance's first speech frame to the end of the frame that ended
  it (so the tail the hangover waited through is part of the reply), then a mark named
  ``reply-<n>``.
* **Speaking.** Until that mark comes back played, the reply is on the line. A VAD speech
  start in that time is a barge-in: the agent asks for :class:`Clear` at once (the
  transport drops its queue and sends the provider's clear message) and listens to the
  new utterance, which it echoes in turn when it ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from voxwire._types import PCM as PCM
from voxwire.aio.surface import CallSurface, CallT
from voxwire.protocols.events import Audio, CallStarted, MarkPlayed, Stopped
from voxwire.resample import Resampler
from voxwire.vad import SpeechEnd, SpeechStart, Vad

__all__ = ["Action", "Clear", "EchoAgent", "EchoStats", "Mark", "Play", "echo_handler"]


@dataclass(frozen=True, slots=True, eq=False)
class Play:
    """Queue ``pcm`` (mono int16 at ``sample_rate``) for paced playback."""

    pcm: PCM
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Mark:
    """Queue a mark after the audio played so far."""

    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    """Barge-in: drop every queued reply, here and at the provider."""


Action = Play | Mark | Clear
"""What :class:`EchoAgent` asks the transport to do."""


@dataclass
class EchoStats:
    """What one call's echo agent did."""

    utterances: int = 0
    """Utterances heard to their end (each one was played back)."""
    replies_played: int = 0
    """Replies whose mark came back played."""
    barge_ins: int = 0
    """Replies cleared because the caller spoke over them."""
    reply_seconds: float = 0.0
    """Seconds of audio queued for playback."""
    reply_delays: list[float] = field(default_factory=list, compare=False)
    """Per reply, seconds of caller audio from the end of the speech to the reply being
    queued (the VAD's hangover and frame): the server's part of the reply latency."""
    clear_delays: list[float] = field(default_factory=list, compare=False)
    """Per barge-in, seconds of caller audio from the onset of the speech to the clear
    (the VAD's detection delay): the server's part of the clear latency."""


class EchoAgent:
    """Echo every utterance back; see the module docstring.

    Parameters
    ----------
    rate : int
        Sample rate of the audio given to :meth:`feed` (and of the replies), one the VAD
        accepts: 8000, 16000 (default), 24000, 32000 or 48000 Hz.
    pre_roll : float
        Seconds of audio before the VAD's first speech frame included in the reply, so a
        soft onset is not cut (default 0.1).
    max_utterance : float
        Longest reply in seconds (default 20); older audio of a longer utterance is
        dropped, which also bounds the memory a call holds.
    vad : Vad, optional
        The detector to use (default ``Vad(rate)``, voxwire's defaults).
    """

    def __init__(
        self,
        rate: int = 16000,
        *,
        pre_roll: float = 0.1,
        max_utterance: float = 20.0,
        vad: Vad | None = None,
    ) -> None:
        if pre_roll < 0 or max_utterance <= 0:
            raise ValueError(
                f"pre_roll must be >= 0 and max_utterance > 0, got {pre_roll}, {max_utterance}"
            )
        self.vad = vad if vad is not None else Vad(rate)
        if self.vad.rate != rate:
            raise ValueError(f"the VAD runs at {self.vad.rate} Hz, the agent at {rate} Hz")
        self.rate = rate
        self.pre_roll = round(pre_roll * rate)
        self.max_samples = round(max_utterance * rate) + self.pre_roll
        self.stats = EchoStats()
        #: name of the reply mark on the line, None while listening
        self.speaking: str | None = None
        self._chunks: deque[PCM] = deque()
        self._first = 0  # absolute index of the first sample held in _chunks
        self._held = 0
        self._start: int | None = None  # first sample of the open utterance

    def reset(self) -> None:
        """Forget the audio and the VAD state (a restarted stream); keep the stats."""
        self.vad.reset()
        self.speaking = None
        self._chunks.clear()
        self._first = self._held = 0
        self._start = None

    @property
    def position(self) -> int:
        """Samples fed since the start of the call."""
        return self._first + self._held

    def feed(self, pcm: PCM) -> list[Action]:
        """Take the next chunk of caller audio (any length); return what to do now."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(f"expected a 1-D numpy int16 array, got {pcm!r:.60}")
        if len(pcm) == 0:
            return []
        self._chunks.append(pcm.copy())  # the caller may reuse its buffer
        self._held += len(pcm)
        actions: list[Action] = []
        frame = self.vad.frame_samples
        for event in self.vad.feed(pcm):
            decided = (event.frame + 1) * frame  # the end of the frame that decided it
            if isinstance(event, SpeechStart):
                self._start = event.sample
                if self.speaking is not None:
                    self.speaking = None
                    self.stats.barge_ins += 1
                    self.stats.clear_delays.append((decided - event.sample) / self.rate)
                    actions.append(Clear())
            elif isinstance(event, SpeechEnd) and self._start is not None:
                self.stats.reply_delays.append((decided - event.sample) / self.rate)
                # up to the end of the frame that ended the turn: the hangover's audio too
                actions += self._reply(self._start, (event.frame + 1) * self.vad.frame_samples)
                self._start = None
        self._trim()
        return actions

    def mark_played(self, name: str, *, cleared: bool = False) -> None:
        """A mark came back: when it is the reply's, the line is free again."""
        if name == self.speaking:
            self.speaking = None
            if not cleared:
                self.stats.replies_played += 1

    def _reply(self, start: int, end: int) -> list[Action]:
        begin = max(self._first, start - self.pre_roll)
        audio = self._slice(begin, end)
        self.stats.utterances += 1
        self.stats.reply_seconds += len(audio) / self.rate
        self.speaking = f"reply-{self.stats.utterances}"
        return [Play(audio, self.rate), Mark(self.speaking)]

    def _slice(self, begin: int, end: int) -> PCM:
        data = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        return np.array(data[begin - self._first : end - self._first], dtype=np.int16)

    def _trim(self) -> None:
        # While an utterance is open keep it (up to max_samples); otherwise keep only the
        # pre-roll a new utterance may need, plus one VAD frame of slack.
        keep = self.max_samples if self._start is not None else self.pre_roll
        keep += self.vad.frame_samples
        while self._chunks and self._held - len(self._chunks[0]) >= keep:
            dropped = self._chunks.popleft()
            self._first += len(dropped)
            self._held -= len(dropped)


async def echo_handler(
    call: CallT,
    *,
    rate: int = 16000,
    pre_roll: float = 0.1,
    hangover_ms: int = 200,
    on_end: Callable[[CallT, EchoStats], None] | None = None,
) -> None:
    """Run an :class:`EchoAgent` on ``call`` until the stream ends.

    Audio arrives at the codec's pipeline rate when the codec has one; any other rate is
    converted to ``rate`` here with voxwire's streaming resampler. ``hangover_ms`` is the
    silence that ends a turn (the VAD's hangover). ``on_end`` receives the
    agent's :class:`EchoStats` when the call ends. Use it as a handler as is, or with
    ``functools.partial`` for other settings::

        async with serve(echo_handler, "twilio", "0.0.0.0", 8080): ...
    """
    agent = EchoAgent(rate, pre_roll=pre_roll, vad=Vad(rate, hangover_ms=hangover_ms))
    try:
        await _run(call, agent, rate)
    finally:
        if on_end is not None:
            on_end(call, agent.stats)


async def _run(call: CallSurface, agent: EchoAgent, rate: int) -> None:
    # Without a pipeline rate on the codec (the AudioSocket server builds its own), audio
    # arrives at the line rate: convert both ways here.
    inbound: Resampler[np.int16] | None = None
    outbound: Resampler[np.int16] | None = None
    line_rate = rate
    async for event in call:
        if isinstance(event, Audio):
            pcm = event.pcm
            if event.sample_rate != rate:
                if inbound is None or inbound.in_rate != event.sample_rate:
                    inbound = Resampler(event.sample_rate, rate)
                    outbound = Resampler(rate, event.sample_rate)
                    line_rate = event.sample_rate
                pcm = inbound.process(pcm)
            for action in agent.feed(pcm):
                if isinstance(action, Play):
                    if outbound is not None and line_rate != action.sample_rate:
                        call.play(outbound.process(action.pcm), line_rate)
                    else:
                        call.play(action.pcm, action.sample_rate)
                elif isinstance(action, Mark):
                    call.mark(action.name)
                else:
                    call.clear()
        elif isinstance(event, MarkPlayed):
            agent.mark_played(event.name, cleared=event.cleared)
        elif isinstance(event, CallStarted):
            agent.reset()  # AudioSocket announces the stream again when its rate changes
        elif isinstance(event, Stopped):
            break
