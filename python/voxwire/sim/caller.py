"""The simulated caller: a phone-side peer that speaks, listens, and times the replies.

It behaves like the provider's side of a media stream (:mod:`voxwire.sim.providers`):
it opens the stream (connected, then start), sends the caller's audio in real time, one
20 ms message per 20 ms, plays what the application sends at the line rate, echoes a mark
only once the audio before it has played, and on a clear drops the queued audio and
answers for the pending marks as the provider does. Optional network impairment
(:class:`voxwire.netsim.Impairment`) delays, jitters and drops the caller's media, and
delays what comes back.

The script of a call (:class:`CallPlan`): silence, the utterance, silence until the reply
has played (or, with a barge-in utterance, speaking over the reply once it has played for
a while, then waiting for the reply to that), a short tail, hang up.

Time line
---------
Everything is measured on one clock, the event loop's, from ``t0``, the moment the first
caller frame began. Caller sample ``m`` is spoken at ``t0 + m / rate`` and sent when its
20 ms frame is complete; reply sample ``h`` of the phone's speaker plays at
``t0 + h / rate``. Audio arriving while nothing plays starts playing at once; audio
arriving while something plays is queued behind it.

* *Reply latency*: from the end of the caller's speech to the first sample of the reply
  playing at the phone.
* *Clear latency*: from the onset of the barge-in speech (its first sample) to the
  arrival of the clear message at the phone.
* *Echo correlation*: the normalized cross-correlation of the caller's speech with what
  the phone played after it, at the best-aligned lag.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import itertools
import math
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any, Generic, TypeVar

import numpy as np

from voxwire._types import PCM
from voxwire.errors import ConformanceError
from voxwire.netsim import Impairment
from voxwire.sim.phone import FakePhone, Playout
from voxwire.sim.providers import PROVIDERS, Message, ProviderSide
from voxwire.sim.speech import speech_bounds

__all__ = [
    "CallPlan",
    "CallReport",
    "MarkRecord",
    "Network",
    "Playout",
    "UtteranceReport",
    "aligned_correlation",
    "place_call",
]


# --- the measure of an echo ------------------------------------------------------------


def aligned_correlation(said: PCM, heard: PCM) -> tuple[float, int]:
    """Best normalized cross-correlation of ``said`` within ``heard``: (value, lag).

    ``value`` is ``<said, heard[lag:lag+n]> / (|said| |heard[lag:lag+n]|)`` maximized
    over every lag at which ``said`` fits inside ``heard``; 1.0 means ``heard`` holds an
    exact (scaled) copy; lags where ``heard`` is silent score 0. ``(0.0, -1)`` when
    ``heard`` is shorter than ``said`` or ``said`` is silent.
    """
    x = said.astype(np.float64)
    y = heard.astype(np.float64)
    n, m = len(x), len(y)
    if n == 0 or m < n or not np.any(x):
        return 0.0, -1
    size = 1 << (n + m - 1).bit_length()
    num = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)[: m - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(y * y)])
    window = energy[n:] - energy[: m - n + 1]
    den = np.sqrt(np.maximum(window, 0.0)) * np.sqrt(float(np.dot(x, x)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ncc = np.where(window > 1e-9 * n, num / den, 0.0)
    lag = int(np.argmax(ncc))
    return float(ncc[lag]), lag


# --- the call's script ------------------------------------------------------------------


@dataclass
class CallPlan:
    """What the simulated caller says, and when.

    ``speech`` (line-rate PCM16) is said after ``lead`` seconds of silence. With
    ``barge_in`` the caller says that once the reply has played for ``barge_in_after``
    seconds, over it. A reply counts as finished once nothing has played for ``quiet``
    seconds after it began; the caller waits at most ``reply_timeout`` seconds for each.
    """

    speech: PCM
    lead: float = 0.4
    barge_in: PCM | None = None
    barge_in_after: float = 0.4
    quiet: float = 0.4
    reply_timeout: float = 6.0
    tail: float = 0.2


@dataclass
class Network:
    """Impairment of the call's path, both ways (seeded, reproducible).

    The caller's media messages are delayed by ``delay`` plus jitter (deviation ``jitter``,
    kept in order), lost with probability ``loss`` (the provider's leg from the phone lost
    the packet, so no message is sent), and with probability ``reorder`` held back 50 ms
    so later ones overtake them (Telnyx says its media order is not guaranteed). Control
    messages and everything sent to the caller are delayed the same way, in order, never
    lost.
    """

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    seed: int = 0
    echo_db: float | None = None
    """Line echo: what the phone plays comes back in what it sends, this many dB down
    (a speakerphone or a hybrid), ``echo_delay`` seconds later. None: no echo."""
    echo_delay: float = 0.03
    noise_bursts: float = 0.0
    """Bursts of white noise in what the phone sends, on average this many per second,
    each 40-140 ms long at ``noise_dbfs`` RMS (a cough, a door, a crackling line)."""
    noise_dbfs: float = -20.0

    def uplink(self) -> Impairment:
        """The model for the caller's media."""
        return Impairment(
            seed=self.seed,
            delay=self.delay,
            jitter=self.jitter,
            loss=self.loss,
            reorder=self.reorder,
        )

    def downlink(self) -> Impairment:
        """The model for what the application sends."""
        return Impairment(seed=self.seed + 1, delay=self.delay, jitter=self.jitter)

    @property
    def line_effects(self) -> bool:
        """Whether echo or noise is added to what the phone sends."""
        return self.echo_db is not None or self.noise_bursts > 0

    @property
    def active(self) -> bool:
        """Whether the path delays, drops or reorders anything."""
        return self.delay > 0 or self.jitter > 0 or self.loss > 0 or self.reorder > 0


# --- the report -------------------------------------------------------------------------


@dataclass
class MarkRecord:
    """One mark the application sent, and what the phone did with it."""

    name: str
    received: float
    position: int
    played_at: float | None = None
    echoed: float | None = None
    cleared: bool = False


@dataclass
class UtteranceReport:
    """One thing the caller said and the reply it got."""

    kind: str  # "speech" or "barge-in"
    onset: float  # seconds from t0
    end: float
    reply_start: float | None = None  # when the reply began playing, seconds from t0
    correlation: float = 0.0
    echo_delay: float | None = None  # heard - said, at the best-aligned lag

    @property
    def reply_latency(self) -> float | None:
        """From the end of the speech to the reply playing, in seconds."""
        return None if self.reply_start is None else self.reply_start - self.end


@dataclass
class CallReport:
    """What the simulated caller heard, and the timings."""

    protocol: str
    rate: int
    utterances: list[UtteranceReport] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)  # arrival times, seconds from t0
    marks: list[MarkRecord] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    #: with a strict side, each message that broke the provider's documented format
    violations: list[str] = field(default_factory=list)
    messages_sent: int = 0
    messages_received: int = 0
    media_lost: int = 0
    said: PCM = field(default_factory=lambda: np.zeros(0, np.int16))
    heard: PCM = field(default_factory=lambda: np.zeros(0, np.int16))
    #: (first sample, samples) of each audio message as it played (cut short by a clear)
    played: list[tuple[int, int]] = field(default_factory=list)
    closed_by_server: bool = False
    #: the WebSocket close code and reason the server sent (None and "" when it sent none,
    #: and for AudioSocket)
    close_code: int | None = None
    close_reason: str = ""
    #: how much of the reply the caller heard after starting to talk over it (seconds)
    heard_after_barge_in: float | None = None

    @property
    def clear_latency(self) -> float | None:
        """From the barge-in onset to the first clear that followed it, in seconds."""
        barge = [u for u in self.utterances if u.kind == "barge-in"]
        if not barge:
            return None
        after = [t for t in self.clears if t >= barge[0].onset]
        return after[0] - barge[0].onset if after else None

    def as_dict(self) -> dict[str, Any]:
        """The figures of the report (no audio), for JSON."""
        return {
            "protocol": self.protocol,
            "rate": self.rate,
            "utterances": [
                {
                    "kind": u.kind,
                    "onset_s": round(u.onset, 4),
                    "end_s": round(u.end, 4),
                    "reply_latency_s": _r(u.reply_latency),
                    "correlation": round(u.correlation, 4),
                    "echo_delay_s": _r(u.echo_delay),
                }
                for u in self.utterances
            ],
            "clear_latency_s": _r(self.clear_latency),
            "heard_after_barge_in_s": _r(self.heard_after_barge_in),
            "clears": len(self.clears),
            "marks": [
                {
                    "name": m.name,
                    "echoed": m.echoed is not None,
                    "cleared": m.cleared,
                }
                for m in self.marks
            ],
            "heard_s": round(float(np.count_nonzero(self.heard)) / self.rate, 3),
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "media_lost": self.media_lost,
            "unexpected": self.unexpected[:10],
            "violations": self.violations[:10],
            "closed_by_server": self.closed_by_server,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
        }

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = [f"{self.protocol} call at {self.rate} Hz"]
        for i, u in enumerate(self.utterances):
            cut = i + 1 < len(self.utterances) and self.utterances[i + 1].kind == "barge-in"
            if u.reply_latency is None:
                reply = "no reply heard"
            elif cut:
                reply = f"reply after {u.reply_latency * 1000:.0f} ms, cut by the barge-in"
            else:
                reply = (
                    f"reply after {u.reply_latency * 1000:.0f} ms, "
                    f"echo correlation {u.correlation:.4f}"
                )
            lines.append(f"  said {u.kind} {u.onset:.2f}-{u.end:.2f} s: {reply}")
        if self.clear_latency is not None:
            lines.append(
                f"  barge-in: clear arrived {self.clear_latency * 1000:.0f} ms after onset"
            )
        elif any(u.kind == "barge-in" for u in self.utterances):
            lines.append("  barge-in: no clear message arrived")
        if self.heard_after_barge_in is not None:
            lines.append(
                f"  reply heard after barge-in onset: {self.heard_after_barge_in * 1000:.0f} ms"
            )
        echoed = sum(m.echoed is not None for m in self.marks)
        cleared = sum(m.cleared for m in self.marks)
        lines.append(
            f"  marks: {len(self.marks)} received, {echoed} echoed after playing, "
            f"{cleared} dropped by a clear; {len(self.clears)} clear(s)"
        )
        lines.append(
            f"  messages: {self.messages_sent} sent, {self.messages_received} received, "
            f"{self.media_lost} media lost to impairment"
        )
        if self.unexpected:
            lines.append(
                f"  unexpected messages: {len(self.unexpected)}, first: {self.unexpected[0]}"
            )
        if self.violations:
            lines.append(
                f"  wire-format violations: {len(self.violations)}, first: {self.violations[0]}"
            )
        if self.close_code is not None:
            by = "the server" if self.closed_by_server else "the phone"
            reason = f" {self.close_reason}" if self.close_reason else ""
            lines.append(f"  closed by {by}: {self.close_code}{reason}")
        return "\n".join(lines)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# --- transports -------------------------------------------------------------------------

Send = Callable[[Message], Awaitable[None]]
Recv = Callable[[], Awaitable[Message | None]]


@contextlib.asynccontextmanager
async def _connect(
    side: ProviderSide,
    url: str,
    ssl: SSLContext | None = None,
    *,
    headers: dict[str, str] | None = None,
    closed: list[tuple[int | None, str]] | None = None,
) -> AsyncIterator[tuple[Send, Recv]]:
    """Connect as the provider; ``closed`` receives the WebSocket close code and reason
    the server sent, ``headers`` go with the upgrade request."""
    if side.raw_tcp:
        scheme, _, target = url.rpartition("://")
        host, _, port = target.rstrip("/").rpartition(":")
        if scheme == "tls" and ssl is None:
            from voxwire.aio.tls import client_context

            ssl = client_context()
        reader, writer = await asyncio.open_connection(host or "127.0.0.1", int(port), ssl=ssl)

        async def send_tcp(message: Message) -> None:
            data = message.encode() if isinstance(message, str) else message
            if writer.is_closing():
                return
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

        async def recv_tcp() -> Message | None:
            try:
                data = await reader.read(65536)
            except ConnectionError:
                return None
            return data or None

        try:
            yield send_tcp, recv_tcp
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        return
    try:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed
        from websockets.typing import Subprotocol
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the simulated caller needs websockets: pip install "voxwire[websockets]"'
        ) from exc
    protocols = [Subprotocol(p) for p in side.subprotocols] or None
    tls: dict[str, Any] = {"ssl": ssl} if ssl is not None and url.startswith("wss:") else {}
    async with connect(
        url,
        subprotocols=protocols,
        compression=None,
        close_timeout=1.0,
        additional_headers=headers,
        **tls,
    ) as ws:

        async def send_ws(message: Message) -> None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(message)

        async def recv_ws() -> Message | None:
            try:
                return await ws.recv()
            except ConnectionClosed as exc:
                if closed is not None and exc.rcvd is not None and not closed:
                    closed.append((exc.rcvd.code, exc.rcvd.reason))
                return None

        yield send_ws, recv_ws


# --- the phone on the line -------------------------------------------------------------

R = TypeVar("R")


class _Phone(FakePhone[ProviderSide], ABC, Generic[R]):
    """The phone's side of one call on the running event loop.

    It queues what the caller sends (through the uplink impairment), plays what comes back
    (through the downlink impairment) on its :class:`Playout`, echoes marks once played
    and answers clears as the provider does, and speaks the frames of :meth:`_script`,
    one per 20 ms, until the script ends or the server closes the call. A subclass
    writes the script and, in :meth:`_finish`, the report.
    """

    FRAME = 0.02

    def __init__(self, side: ProviderSide, network: Network) -> None:
        super().__init__(side)
        self.network = network
        self.loop = asyncio.get_running_loop()
        self.uplink = network.uplink() if network.active else None
        self.downlink = network.downlink() if network.active else None
        # what happened on the line
        self.clears: list[float] = []  # arrival times, seconds from t0
        self.marks: list[MarkRecord] = []
        self.messages_sent = 0
        self.messages_received = 0
        self.media_lost = 0
        self.closed_by_server = False
        self.violations: list[str] = []  # a strict side's ConformanceErrors
        self.closed_at: float | None = None  # when the server closed, seconds from t0
        self.ended: float | None = None  # when the call ended (loop time)
        self._out: list[tuple[float, int, Message]] = []
        self._order = itertools.count()
        self._last_arrival = -math.inf
        self._last_down = -math.inf
        self._send_wake = asyncio.Event()  # a message was queued
        self._tick_wake = asyncio.Event()  # the phone's state changed: marks may be due
        self._later: set[asyncio.TimerHandle] = set()
        self._mouth: list[PCM] = []
        self._said = 0  # samples said so far
        self._marks: dict[str, MarkRecord] = {}
        self._noise = random.Random(network.seed + 7)
        self._noise_left = 0  # samples of the current noise burst still to come
        #: noise bursts added to what the phone sent
        self.noise_bursts = 0
        self.done = False

    # what a subclass provides
    @abstractmethod
    def _script(self) -> Iterator[PCM]:
        """The caller's frames, one per 20 ms; it may decide from what the phone heard."""

    @abstractmethod
    def _finish(self) -> R:
        """The report, once the call has ended."""

    # uplink: every message leaves through one queue, in arrival-time order
    def _put(self, message: Message, now: float, media: bool = False) -> None:
        if self.uplink is None:
            arrivals = [now]
        elif media:
            arrivals = self.uplink.schedule(now)
            if not arrivals:
                self.media_lost += 1
        else:
            # control messages keep their place behind everything sent before them
            arrivals = [max(now + self.network.delay, self._last_arrival)]
        for when in arrivals:
            self._last_arrival = max(when, self._last_arrival)
            heapq.heappush(self._out, (when, next(self._order), message))
        self._send_wake.set()

    async def _sender(self, send: Send) -> None:
        while True:
            now = self.loop.time()
            while self._out and self._out[0][0] <= now:
                _, _, message = heapq.heappop(self._out)
                self.messages_sent += 1
                await send(message)
            if self.done and not self._out:
                return
            self._send_wake.clear()
            timeout = self._out[0][0] - self.loop.time() if self._out else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._send_wake.wait(), timeout)

    # downlink
    async def _reader(self, recv: Recv) -> None:
        while (message := await recv()) is not None:
            now = self.loop.time()
            self.messages_received += 1
            if self.downlink is None:
                self._handle(message, now)
            else:
                when = max(self.downlink.schedule(now)[0], self._last_down)
                self._last_down = when
                self._later.add(self.loop.call_at(when, self._handle_later, message))
        self.closed_by_server = not self.done
        if self.closed_by_server:
            self.closed_at = self.loop.time() - self.playout.t0

    def _handle_later(self, message: Message) -> None:
        now = self.loop.time()
        self._later = {h for h in self._later if h.when() > now}
        self._handle(message, now)

    def _handle(self, message: Message, now: float) -> None:
        try:
            replies = self.deliver(message, now)
        except ConformanceError as exc:  # a strict side: kept for the report, the call goes on
            self.violations.append(str(exc))
            replies = []
        for reply in replies:
            self._put(reply, now)
        self._tick_wake.set()

    # the phone's records of what the application asked for
    def _on_mark(self, name: str, position: int, now: float) -> None:
        record = MarkRecord(name, now - self.playout.t0, position)
        self._marks[name] = record
        self.marks.append(record)

    def _on_cleared(self, pending: Sequence[str], now: float) -> None:
        self.clears.append(now - self.playout.t0)
        for name in pending:
            if name in self._marks:
                self._marks[name].cleared = True

    def _on_mark_played(self, name: str, now: float) -> None:
        record = self._marks.get(name)
        if record is not None:
            record.played_at = now - self.playout.t0
            record.echoed = record.played_at

    def _echo_due_marks(self, now: float) -> None:
        for reply in self.advance(now):
            self._put(reply, now)

    # helpers for scripts
    def _frames(self, pcm: PCM) -> Iterator[PCM]:
        """``pcm`` as 20 ms frames, the last one padded with silence."""
        frame = self.side.frame
        padded = np.concatenate([pcm, np.zeros(-len(pcm) % frame, np.int16)])
        for i in range(0, len(padded), frame):
            yield padded[i : i + frame]

    def _position(self) -> int:
        """Samples the caller has said so far."""
        return self._said

    def _first_played_from(self, position: int) -> int | None:
        """Where the first audio queued at or after ``position`` starts, or None."""
        # segment starts increase strictly and no kept segment is empty (see Playout)
        segments = self.playout.segments
        i = bisect.bisect_left(segments, position, key=lambda s: s[0])
        return segments[i][0] if i < len(segments) else None

    def _line(self, pcm: PCM, k: int) -> PCM:
        """The caller's frame ``k`` as the line carries it: plus echo and noise."""
        net = self.network
        out = pcm.astype(np.float64)
        n = len(pcm)
        if net.echo_db is not None:
            start = k * n - round(net.echo_delay * self.rate)
            out += self.playout.played(start, n) * 10 ** (net.echo_db / 20)
        if self._noise_left == 0 and self._noise.random() < net.noise_bursts * self.FRAME:
            self._noise_left = round(self._noise.uniform(0.04, 0.14) * self.rate)
            self.noise_bursts += 1
        if self._noise_left:
            m = min(n, self._noise_left)
            rms = 32768 * 10 ** (net.noise_dbfs / 20)
            noise = np.random.default_rng(self._noise.getrandbits(32)).normal(0, rms, m)
            out[:m] += noise
            self._noise_left -= m
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    async def run(self, send: Send, recv: Recv) -> R:
        loop = self.loop
        sender = loop.create_task(self._sender(send))
        reader = loop.create_task(self._reader(recv))
        try:
            for message in self.side.opening():
                self._put(message, loop.time())
            t0 = loop.time()
            self.playout.t0 = t0
            k = 0
            script = self._script()
            while not reader.done():
                now = loop.time()
                self._echo_due_marks(now)
                finished = False
                while t0 + (k + 1) * self.FRAME <= now:
                    pcm = next(script, None)
                    if pcm is None:
                        finished = True
                        break
                    self._mouth.append(pcm)
                    self._said += len(pcm)
                    line = self._line(pcm, k) if self.network.line_effects else pcm
                    self._put(self.side.audio(line), t0 + (k + 1) * self.FRAME, media=True)
                    k += 1
                if finished:
                    break
                wake = t0 + (k + 1) * self.FRAME
                due = self.playout.next_due()
                if due is not None:
                    wake = min(wake, due)
                self._tick_wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._tick_wake.wait(), max(0.0, wake - loop.time()))
            self.ended = loop.time()
            closing = self.side.closing()
            for message in closing:
                self._put(message, loop.time())
            self.done = True
            self._send_wake.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(sender), 2.0)
            if closing:
                # the server ends the call after the stop message
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), 1.0)
        finally:
            self.done = True
            if self.ended is None:
                self.ended = loop.time()
            for handle in self._later:
                handle.cancel()
            for task in (sender, reader):
                task.cancel()
            await asyncio.gather(sender, reader, return_exceptions=True)
        return self._finish()


# --- the call ---------------------------------------------------------------------------


class _Caller(_Phone[CallReport]):
    """One simulated call following a :class:`CallPlan`."""

    def __init__(self, side: ProviderSide, plan: CallPlan, network: Network) -> None:
        super().__init__(side, network)
        self.plan = plan
        self.report = CallReport(side.name, side.rate)

    # the caller's mouth
    def _script(self) -> Iterator[PCM]:
        """Yield the caller's frames, one per 20 ms, deciding from what the phone heard."""
        plan = self.plan
        silence = np.zeros(self.side.frame, np.int16)
        for _ in range(round(plan.lead / self.FRAME)):
            yield silence
        yield from self._say("speech", plan.speech)
        if plan.barge_in is not None:
            # wait for the reply to play for barge_in_after seconds, then talk over it
            deadline = self._position() + round(plan.reply_timeout * self.rate)
            while self._position() < deadline:
                start = self._reply_start(self.report.utterances[-1])
                if (
                    start is not None
                    and self._position() - start >= plan.barge_in_after * self.rate
                ):
                    break
                yield silence
            yield from self._say("barge-in", plan.barge_in)
        # wait for the (last) reply to finish
        deadline = self._position() + round(plan.reply_timeout * self.rate)
        last = self.report.utterances[-1]
        while self._position() < deadline:
            start = self._reply_start(last)
            now = self.loop.time()
            if start is not None and not self.playout.playing(now):
                quiet = self.playout.sample(now) - self.playout.end
                if quiet >= plan.quiet * self.rate:
                    break
            yield silence
        for _ in range(round(plan.tail / self.FRAME)):
            yield silence

    def _say(self, kind: str, pcm: PCM) -> Iterator[PCM]:
        first, last = speech_bounds(pcm, self.rate)
        at = self._position()
        self.report.utterances.append(
            UtteranceReport(kind, (at + first) / self.rate, (at + last) / self.rate)
        )
        yield from self._frames(pcm)

    def _reply_start(self, utterance: UtteranceReport) -> int | None:
        return self._first_played_from(round(utterance.end * self.rate))

    def _finish(self) -> CallReport:
        report = self.report
        report.clears = self.clears
        report.marks = self.marks
        report.unexpected = self.unexpected
        report.violations = self.violations
        report.messages_sent = self.messages_sent
        report.messages_received = self.messages_received
        report.media_lost = self.media_lost
        report.closed_by_server = self.closed_by_server
        said = np.concatenate(self._mouth) if self._mouth else np.zeros(0, np.int16)
        report.said = said
        report.heard = heard = self.playout.track(len(said))
        report.played = [(start, len(pcm)) for start, pcm, _ in self.playout.segments]
        rate = self.rate
        for i, u in enumerate(report.utterances):
            start = self._reply_start(u)
            u.reply_start = None if start is None else start / rate
            onset, end = round(u.onset * rate), round(u.end * rate)
            # the reply to this utterance lies after its end and before the next one's end
            stop = (
                round(report.utterances[i + 1].end * rate)
                if i + 1 < len(report.utterances)
                else len(heard)
            )
            value, lag = aligned_correlation(said[onset:end], heard[end:stop])
            u.correlation = value
            u.echo_delay = None if lag < 0 else (end + lag - onset) / rate
        barge = [u for u in report.utterances if u.kind == "barge-in"]
        if barge:
            onset = round(barge[0].onset * rate)
            end_of_barge = round(barge[0].end * rate)
            before = [
                (s, p)
                for s, p, arrived in self.playout.segments
                if arrived - self.playout.t0 < barge[0].end
            ]
            last = max((s + len(p) for s, p in before), default=onset)
            report.heard_after_barge_in = max(0, min(last, end_of_barge) - onset) / rate
        return report


async def place_call(
    url: str,
    protocol: str,
    plan: CallPlan,
    *,
    rate: int | None = None,
    network: Network | None = None,
    ssl: SSLContext | None = None,
    token: str | None = None,
    strict: bool = False,
) -> CallReport:
    """Call ``url`` as the provider of ``protocol`` would, follow ``plan``, and report.

    ``url`` is a ``ws://`` or ``wss://`` URL, or ``host:port`` (``tcp://host:port``, or
    ``tls://host:port`` over TLS) for AudioSocket; ``ssl`` is the client TLS context
    (default: the system's trusted certificates). ``token`` goes with the upgrade request
    as ``Authorization: Bearer`` (WebSocket protocols). The report carries the close code
    and reason the server sent.
    ``plan.speech`` must be at the line ``rate`` (the protocol's default when None).
    Bound the call with :func:`asyncio.wait_for`; it also ends when the server closes.
    With ``strict`` the provider side checks every message the server sends against the
    provider's documented format; each one that breaks it is listed in the report's
    ``violations`` (the message is not played), and the call goes on.
    """
    if protocol not in PROVIDERS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROVIDERS)}")
    side = PROVIDERS[protocol](rate, strict=strict)
    caller = _Caller(side, plan, network or Network())
    headers = {"Authorization": f"Bearer {token}"} if token else None
    closed: list[tuple[int | None, str]] = []
    async with _connect(side, url, ssl, headers=headers, closed=closed) as (send, recv):
        report = await caller.run(send, recv)
    if closed:
        report.close_code, report.close_reason = closed[0]
    return report
