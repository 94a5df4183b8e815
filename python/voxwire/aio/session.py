"""One call over any transport: the glue every asyncio adapter shares.

An adapter wraps its connection in a :class:`Transport` (receive one message, send one,
close with a code) and calls :func:`run_call`. The call's decisions (limits, deferred
token authentication, mark resolution, the outbound order, close decisions) are made by
a :class:`voxwire.call.core.CallCore`, which does no I/O; this module drives it, once
for every adapter: the read loop handing it messages with the loop's clock, the write
loop sending what it queues, one timer at its next deadline, the pacer registration of
its paced stream, the reports of its closes (logs, counts, the audit log), and the
:class:`Call` object handed to the application's handler.

The handler is ``async def handler(call: Call) -> None``. It iterates the call's events
and plays audio::

    async def echo(call: Call) -> None:
        async for event in call:
            if isinstance(event, Audio):
                call.play(event.pcm, event.sample_rate)

When the handler returns the connection is closed normally; when the peer ends the stream
the iteration ends and the handler has ``Limits.handler_grace`` seconds to return.

Close codes
-----------
==========================  =====  =================================================
constant                    code   when
==========================  =====  =================================================
``CLOSE_NORMAL``            1000   the handler returned, or the stream stopped
``CLOSE_PROTOCOL_ERROR``    1002   the peer broke the protocol beyond recovery (a
                                   refused start message included: the reason names
                                   the value)
``CLOSE_POLICY``            1008   authentication failed (a wrong token in the start
                                   message, or none within ``Limits.auth_timeout``
                                   seconds of a connection that did not show one on
                                   the upgrade), or a rate limit (see below)
``CLOSE_TOO_BIG``           1009   a message larger than ``Limits.max_message_bytes``
``CLOSE_INTERNAL``          1011   the handler or voxwire itself raised
``CLOSE_IDLE``              4000   nothing received for ``Limits.idle_timeout`` seconds
``CLOSE_SLOW_PEER``         4001   the peer stopped reading: it has not answered a
                                   read probe (a WebSocket ping, answered only once
                                   everything sent before it was read) within
                                   ``Limits.max_read_lag`` seconds, or more than
                                   ``Limits.max_pending_out`` messages wait to be sent
==========================  =====  =================================================

Every close for a limit is logged with the call's id and its reason, and counted in
:data:`VIOLATIONS` by kind (``too_big``, ``audio_rate``, ``message_rate``, ``idle``,
``slow_peer``, ``auth``, ``auth_deadline``; the adapters add the refusals made before
the upgrade: ``unauthorized``, ``connections``, ``per_address``).

Slow peers
----------
A peer that stops reading is not seen by the sender's queue for a long time: the two
kernels' socket buffers absorb megabytes (on Linux loopback more than 40 s of a
telephony stream) before a send blocks. So where the transport can probe (the
``websockets`` server: a ping, whose pong the peer's WebSocket stack sends only after
reading everything queued before the ping), a probe goes out every
``Limits.read_probe_interval`` seconds and an answer later than ``Limits.max_read_lag``
closes the call with ``CLOSE_SLOW_PEER``, well before the ``websockets`` keepalive
(20 s + 20 s) would. A stall shorter than ``max_read_lag`` (a network hiccup) passes.

Rate limits
-----------
Two token buckets, refilled in real time. A message that carries audio costs its duration
(at least ``Limits.min_message_audio``) from a bucket of ``Limits.max_audio_burst`` seconds
refilled at ``Limits.max_audio_rate`` seconds per second: audio a stalled network held back
and then delivers at once passes (it is bounded by its own duration), a sender running
ahead of real time for long, or sending tiny media messages at a huge rate, does not. A
message without audio (control, marks, skipped input) costs one token from a bucket of
``Limits.max_messages_per_second`` tokens refilled at that rate (one second of burst).

Failures
--------
No exception ends a call silently. One raised anywhere on a call's paths (``recv`` the
transport, ``receive`` the codec, ``dispatch`` the events, ``timer`` the codec's timer,
``sink`` the pacer's hand-off, ``writer`` the transport's send, ``handler`` the
application) is logged once with the call's id, counted in :data:`ERRORS` by stage and
type, and closes the call: :class:`~voxwire.errors.RemoteProtocolError` with
``CLOSE_PROTOCOL_ERROR`` and its message as the reason, anything else with
``CLOSE_INTERNAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from voxwire.aio.pacer import Pacer, get_pacer
from voxwire.audit import audit, safe_parameters
from voxwire.call.core import CallCore
from voxwire.call.policy import (
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SLOW_PEER,
    CLOSE_TOO_BIG,
    CallPolicy,
    CloseDecision,
    Limits,
)
from voxwire.errors import ConnectionClosed, RemoteProtocolError
from voxwire.pacing import PacedItem, PacedStream
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.events import CallStarted, Event
from voxwire.protocols.stats import SessionStats
from voxwire.security import TokenAuth, TokenClaims

__all__ = [
    "CLOSE_IDLE",
    "CLOSE_INTERNAL",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SLOW_PEER",
    "CLOSE_TOO_BIG",
    "ERRORS",
    "VIOLATIONS",
    "Call",
    "CallErrors",
    "Counts",
    "Handler",
    "Limits",
    "Transport",
    "run_call",
]

log = logging.getLogger("voxwire.aio")

_STAGES = ("recv", "receive", "dispatch", "timer", "sink", "writer", "handler", "task")


class CallErrors:
    """Exceptions raised on calls' paths, counted by (stage, exception type name).

    One object per process (:data:`ERRORS`) counts every call's; read it for metrics.
    The stages are ``recv``, ``receive``, ``dispatch``, ``timer``, ``sink``, ``writer``,
    ``handler`` and ``task`` (a task that raised past its own guard).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def note(self, stage: str, exc: BaseException) -> None:
        """Count one exception raised at ``stage``."""
        if stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {_STAGES}")
        key = (stage, type(exc).__name__)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def count(self, stage: str | None = None, kind: str | None = None) -> int:
        """Exceptions counted, all or those of one stage and/or type name."""
        with self._lock:
            return sum(
                n
                for (s, k), n in self._counts.items()
                if (stage is None or s == stage) and (kind is None or k == kind)
            )

    def as_dict(self) -> dict[tuple[str, str], int]:
        """A copy of the counts, keyed by (stage, exception type name)."""
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()


ERRORS = CallErrors()
"""The process's :class:`CallErrors`: every call counts its exceptions here."""


class Counts:
    """Events counted by kind (thread-safe): limit violations, refusals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def note(self, kind: str) -> None:
        """Count one event of ``kind``."""
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1

    def count(self, kind: str | None = None) -> int:
        """Events counted, all or those of one kind."""
        with self._lock:
            if kind is None:
                return sum(self._counts.values())
            return self._counts.get(kind, 0)

    def as_dict(self) -> dict[str, int]:
        """A copy of the counts, keyed by kind."""
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._counts.clear()


VIOLATIONS = Counts()
"""Calls closed for a limit and connections refused before the upgrade, by kind: the
calls' ``too_big``, ``audio_rate``, ``message_rate``, ``idle``, ``slow_peer``, ``auth``,
``auth_deadline``; the adapters' ``unauthorized``, ``connections``, ``per_address``."""

_serial = itertools.count(1)


class Transport(Protocol):
    """What an adapter provides: one connection, message by message."""

    async def recv(self) -> str | bytes:
        """The next message; raise :class:`~voxwire.errors.ConnectionClosed` at the end."""
        ...

    async def send(self, message: Outbound) -> None:
        """Send one message (``str`` as text, ``bytes`` as binary)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the connection with a code and a reason."""
        ...


class ProbingTransport(Transport, Protocol):
    """A :class:`Transport` that can tell whether its peer is still reading."""

    async def read_probe(self) -> None:
        """Return once the peer has read everything sent before this call (raise
        :class:`~voxwire.errors.ConnectionClosed` if the connection ends first)."""
        ...


Handler = Callable[["Call"], Awaitable[None]]


class Call:
    """One call as the application sees it: events in, paced audio out.

    The decisions are the :class:`~voxwire.call.core.CallCore`'s (:attr:`core`); this
    object drives it: it reads, writes, keeps its timer and its paced stream's pacer
    registration, and reports its closes.
    """

    def __init__(
        self,
        codec: MediaStreamCodec,
        transport: Transport,
        *,
        pacer: Pacer,
        limits: Limits,
        auth: TokenAuth | None = None,
        authenticated: bool = True,
        credential: TokenClaims | None = None,
    ) -> None:
        self.codec = codec
        self.transport = transport
        self.limits = limits
        self._pacer = pacer
        self._auth = auth
        #: the call's decisions (its clocks start when the read loop does)
        self.core = CallCore(
            codec, limits, auth=auth, authenticated=authenticated, credential=credential
        )
        self._readable = asyncio.Event()
        self._logged: set[str] = set()  # the kinds of skipped input logged so far
        self._input_done = asyncio.Event()  # set once the peer's input has ended
        self._writable = asyncio.Event()
        self._events_end = False
        self._paced: PacedStream | None = None  # the stream registered with the pacer
        self._reported: CloseDecision | None = None
        self._closed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        #: a process-unique number naming the call in logs before its stream id is known
        self.serial = next(_serial)
        #: the client's address where the transport knows it (for logs and the audit log)
        self.remote = str(getattr(transport, "remote", ""))
        #: says a text into the call as the agent, where the call's agent can (set by
        #: :class:`voxwire.agents.pipeline.VoiceAgent`; the control API's ``say``)
        self.on_say: Callable[[str], None] | None = None

    # --- application API -------------------------------------------------------------

    @property
    def started(self) -> CallStarted | None:
        """The start message, once received."""
        return self.codec.started

    @property
    def stats(self) -> SessionStats:
        """The codec's :class:`~voxwire.protocols.base.SessionStats`."""
        return self.codec.stats

    @property
    def policy(self) -> CallPolicy:
        """The call's limits as decisions (:attr:`core`'s)."""
        return self.core.policy

    @property
    def credential(self) -> TokenClaims | None:
        """The claims of the signed per-call token the call authenticated with, if any."""
        return self.core.credential

    @property
    def authenticated(self) -> bool:
        """Whether the call has shown a valid token (or none was asked for)."""
        return self.core.authenticated

    @property
    def stream(self) -> PacedStream | None:
        """The outbound paced stream, once the call started."""
        return self.core.stream

    @property
    def events_dropped(self) -> int:
        """Inbound audio events dropped because the handler fell behind."""
        return self.core.events_dropped

    @property
    def muted(self) -> bool:
        """While set, :meth:`play` drops the agent's audio (:meth:`mute`)."""
        return self.core.muted

    @property
    def muted_samples(self) -> int:
        """Line-rate samples :meth:`play` dropped while muted."""
        return self.core.muted_samples

    @property
    def close_code(self) -> int | None:
        """The code the call closes with, once decided."""
        closing = self.core.closing
        return None if closing is None else closing.code

    @property
    def close_reason(self) -> str:
        """The reason sent with :attr:`close_code` ("" before)."""
        closing = self.core.closing
        return "" if closing is None else closing.reason

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        events = self.core.events
        readable = self._readable
        while True:
            if events:
                yield events.popleft()
            elif self._events_end:
                return
            else:
                readable.clear()
                await readable.wait()

    def play(self, pcm: object, sample_rate: int | None = None) -> None:
        """Queue audio for paced playback (at ``sample_rate``, default the line rate);
        dropped (and counted in :attr:`muted_samples`) while :attr:`muted`, and dropped
        once the provider has stopped the stream: a handler still working through the
        events queued before the stop is not failed for answering a caller who left."""
        self.core.play(pcm, sample_rate)

    def mute(self) -> None:
        """Silence the agent: what is queued is dropped, here and at the provider (as
        :meth:`clear` does), and what it plays next is not sent until :meth:`unmute`.
        Marks still pass, so an agent waiting for its audio to be heard is not stuck."""
        self.core.mute()
        self._wake()

    def unmute(self) -> None:
        """Let the agent's audio through again (from what it plays next)."""
        self.core.unmute()

    def flush(self) -> None:
        """Pad and queue the last partial frame (call at the end of an utterance)."""
        self.core.flush()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far; a :class:`MarkPlayed` follows."""
        self.core.mark(name)

    def clear(self) -> None:
        """Barge-in: drop queued audio here and at the provider, now."""
        self.core.clear()
        self._wake()

    @property
    def played_samples(self) -> int:
        """Line-rate samples the caller is known to have heard (from marks)."""
        return self.core.played_samples

    @property
    def played_seconds(self) -> float:
        """:attr:`played_samples` in seconds of line-rate audio."""
        return self.core.played_seconds

    def playout_position(self, now: float) -> int:
        """Line-rate samples the phone has played by ``now`` (the send clock's estimate,
        :meth:`voxwire.pacing.PacedStream.playout_position`); 0 before the call starts."""
        return self.core.playout_position(now)

    @property
    def committed_samples(self) -> int:
        """Line-rate samples the caller hears whatever happens now: those its marks have
        confirmed played (a clear drops the rest at the provider)."""
        return self.core.played_samples

    @property
    def queued_total(self) -> int:
        """Line-rate samples queued since the call started: where the next audio begins."""
        return self.core.queued_total

    @property
    def queued_samples(self) -> int:
        """Line-rate samples waiting in the pacer."""
        return self.core.queued_samples

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the connection (idempotent)."""
        self.core.close(code, reason)
        self._settle()

    # --- the driver ------------------------------------------------------------------

    def _wake(self) -> None:
        """After the core changed: wake the reader and the writer, report a close."""
        if self.core.events:
            self._readable.set()
        if self.core.outbox:
            self._writable.set()
        if self.core.closing is not None:
            self._settle()

    def _settle(self) -> None:
        """The core decided to close: report it once, end the events, stop the writer
        after what is queued, wake whoever waits."""
        decision = self.core.closing
        if decision is None or self._reported is not None:
            return
        self._reported = decision
        if decision.kind:
            self._report_limit(decision)
            self._end_events()
        self._writable.set()
        self._closed.set()

    def _end_events(self) -> None:
        self._events_end = True
        self._readable.set()

    def _sync_stream(self) -> None:
        """Register the core's paced stream with the pacer (a new start opens a new one)."""
        stream = self.core.stream
        if stream is self._paced:
            return
        if self._paced is not None:
            self._pacer.close(self._paced)
        self._paced = stream
        if stream is None:
            return
        self._pacer.open(stream, self._sink)
        started = self.codec.started
        assert started is not None
        fmt = started.media_format
        claims = self.core.credential
        audit(
            "call_start",
            call=self.serial,
            protocol=self.codec.name,
            remote=self.remote,
            stream_id=started.stream_id,
            call_id=started.call_id,
            encoding=fmt.encoding,
            rate=fmt.sample_rate,
            custom=safe_parameters(
                started.custom_parameters, self._auth.custom_parameter if self._auth else None
            ),
            token_call=claims.call if claims else None,
            key_id=claims.key_id if claims else None,
        )

    def _sink(self, item: PacedItem) -> None:
        core = self.core
        try:
            refused = core.paced(item)
        except Exception as exc:
            self._fail("sink", exc)
            return
        if refused is not None:
            self._settle()
            return
        if core.outbox:
            self._writable.set()
        if core.events:
            self._readable.set()

    def _report_limit(self, decision: CloseDecision) -> None:
        """A close for a limit (or a failed authentication): log, count, audit."""
        kind, code, reason = decision.kind, decision.code, decision.reason
        VIOLATIONS.note(kind)
        log.warning(
            "closing %s call %r for %s: %d %s", self.codec.name, self._ident(), kind, code, reason
        )
        audit(
            "auth_failure" if kind.startswith("auth") else "limit_violation",
            call=self.serial,
            protocol=self.codec.name,
            remote=self.remote,
            kind=kind,
            code=code,
            reason=reason,
        )

    def _ident(self) -> str:
        started = self.codec.started
        return started.stream_id if started else f"#{self.serial} (not started)"

    def _fail(self, stage: str, exc: BaseException) -> None:
        """Log, count and close for one exception raised at ``stage``."""
        ERRORS.note(stage, exc)
        if isinstance(exc, RemoteProtocolError):
            log.warning(
                "%s call %r: protocol error in %s: %s", self.codec.name, self._ident(), stage, exc
            )
            code, reason = CLOSE_PROTOCOL_ERROR, str(exc)[:120]
        else:
            log.error(
                "%s call %r: %s raised %s",
                self.codec.name,
                self._ident(),
                stage,
                type(exc).__name__,
                exc_info=exc,
            )
            code, reason = CLOSE_INTERNAL, f"internal error in {stage}: {type(exc).__name__}"
        if self.core.closing is None:
            self._end_events()
            self.core.close(code, reason)
            self._settle()

    def _arm_timer(self) -> None:
        """Keep one timer at the core's next deadline. Deadlines that moved later (the
        idle one moves with every message) are not re-armed: the early wake-up finds
        nothing due and arms the new deadline."""
        when = self.core.get_timer()
        timer = self._timer
        if when is None:
            if timer is not None:
                timer.cancel()
                self._timer = None
            return
        if timer is not None:
            if when >= self._timer_at:
                return
            timer.cancel()
        self._timer_at = when
        self._timer = asyncio.get_running_loop().call_at(when, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        if self.core.closing is not None:
            return
        try:
            self.core.handle_timer(asyncio.get_running_loop().time())
            self._sync_stream()
        except Exception as exc:
            self._fail("timer", exc)
            return
        self._wake()
        self._arm_timer()

    def _begin_input(self) -> None:
        """Start the core's clock and the timer: the call's input begins."""
        self.core.begin(asyncio.get_running_loop().time())
        self._arm_timer()

    def feed(self, message: str | bytes) -> bool:
        """Take one message from the peer, now (the read loop's body, for a transport
        that pushes its messages; see :func:`run_call`). Returns False once the call's
        input has ended (a close was decided, or it had ended before): stop feeding."""
        core = self.core
        if core.input_ended or self._input_done.is_set():
            return False
        stage = "receive"
        try:
            codec = self.codec
            events = core.decode(message, asyncio.get_running_loop().time())
            stats = codec.stats
            logged = self._logged
            if len(stats.first_reason) != len(logged):
                for kind, reason in stats.first_reason.items():
                    if kind not in logged:
                        logged.add(kind)
                        log.warning(
                            "%s call %r: skipped %s input (logged once): %s",
                            codec.name,
                            self._ident(),
                            kind,
                            reason,
                        )
            stage = "dispatch"
            if events:
                core.route(events)
                if core.stream is not self._paced:
                    self._sync_stream()
                if core.events:
                    self._readable.set()
            if core.closing is not None:
                self._settle()
                self.feed_end(None)
                return False
            if core.input_ended:  # the stream's own end (a hang-up message)
                self.feed_end(None)
                return False
            stage = "timer"
            when = core.get_timer()
            if when is None or self._timer is None or when < self._timer_at:
                self._arm_timer()
        except Exception as exc:
            self._fail(stage, exc)
            self.feed_end(None)
            return False
        return True

    def feed_end(self, closed: ConnectionClosed | None) -> None:
        """The peer's input ended (``closed``: how, None when the call ended it)."""
        if self._input_done.is_set():
            return
        core = self.core
        try:
            if closed is not None and closed.local and closed.code == CLOSE_TOO_BIG:
                core.close_for(core.policy.too_big_closed(closed.reason))
                self._settle()
        finally:
            core.end_of_input()
            if self._timer is not None:  # idleness is the reader's to judge, not the grace's
                self._timer.cancel()
                self._timer = None
            self._end_events()
            self._input_done.set()

    async def _input_ended(self) -> None:
        await self._input_done.wait()

    async def _read_loop(self) -> None:
        recv = self.transport.recv
        feed = self.feed
        self._begin_input()
        try:
            while True:
                try:
                    message = await recv()
                except ConnectionClosed as exc:
                    self.feed_end(exc)
                    return
                if not feed(message):
                    return
        except Exception as exc:
            self._fail("recv", exc)
        finally:
            self.feed_end(None)

    async def _write_loop(self) -> None:
        outbox = self.core.outbox
        writable = self._writable
        send = self.transport.send
        while True:
            if outbox:
                try:
                    await send(outbox.popleft())
                except ConnectionClosed:
                    return
                except Exception as exc:
                    self._fail("writer", exc)
                    return
            elif self._reported is not None:
                return
            else:
                writable.clear()
                await writable.wait()

    async def _probe_loop(self, probe: Callable[[], Awaitable[None]]) -> None:
        """Probe the peer's reading (see "Slow peers"); close it when it lags."""
        limits = self.limits
        while self.core.closing is None:
            await asyncio.sleep(limits.read_probe_interval)
            if self.core.closing is not None:
                return
            try:
                await asyncio.wait_for(probe(), limits.max_read_lag)
            except asyncio.TimeoutError:
                self.core.close_for(self.policy.read_lag_exceeded())
                self._settle()
                return
            except ConnectionClosed:
                return

    def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._paced is not None:
            self._pacer.close(self._paced)
            self._paced = None


async def run_call(
    codec: MediaStreamCodec,
    transport: Transport,
    handler: Handler,
    *,
    pacer: Pacer | None = None,
    limits: Limits | None = None,
    auth: TokenAuth | None = None,
    authenticated: bool = True,
    credential: TokenClaims | None = None,
) -> Call:
    """Run one call to its end; return the finished :class:`Call` (for its stats).

    ``authenticated=False`` means the upgrade request did not carry the token and the
    start message must (``auth.custom_parameter``) within ``limits.auth_timeout``
    seconds; until it does, nothing reaches the handler. ``credential`` are the claims
    of the signed token the upgrade request carried.
    """
    limits = limits or Limits()
    call = Call(
        codec,
        transport,
        pacer=pacer if pacer is not None else get_pacer(),
        limits=limits,
        auth=auth,
        authenticated=authenticated,
        credential=credential,
    )
    loop = asyncio.get_running_loop()
    began = loop.time()
    attach: Callable[[Call], None] | None = getattr(transport, "attach", None)
    if attach is None:
        reader = loop.create_task(call._read_loop())
    else:
        # the transport pushes each message into call.feed from its own callback: no read
        # task, no queue per call
        call._begin_input()
        attach(call)
        reader = loop.create_task(call._input_ended())
    writer = loop.create_task(call._write_loop())
    user = loop.create_task(_guarded(handler, call))
    closed = loop.create_task(call._closed.wait())
    tasks = [reader, writer, user, closed]
    probe: Callable[[], Awaitable[None]] | None = getattr(transport, "read_probe", None)
    if probe is not None:
        tasks.append(loop.create_task(call._probe_loop(probe)))
    try:
        await asyncio.wait({reader, user, closed}, return_when=asyncio.FIRST_COMPLETED)
        if user.done() and call.close_code is None:
            await call.close(CLOSE_NORMAL, "")
        if not user.done():
            # the stream ended or the connection is closing: let the handler finish
            call._end_events()
            done, _ = await asyncio.wait({user}, timeout=limits.handler_grace)
            if not done:
                user.cancel()
        await call.close(CLOSE_NORMAL, "")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(writer), 1.0)
    finally:
        call._shutdown()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):  # a task raised past its guard: still counted
                call._fail("task", result)
        code = call.close_code if call.close_code is not None else CLOSE_NORMAL
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.close(code, call.close_reason), 1.0)
        started = codec.started
        audit(
            "call_end",
            call=call.serial,
            protocol=codec.name,
            remote=call.remote,
            stream_id=started.stream_id if started else None,
            code=code,
            reason=call.close_reason,
            seconds=round(loop.time() - began, 3),
            audio_in_seconds=codec.stats.traffic(
                started.media_format.sample_rate if started else 0
            )["audio_in_s"],
            skipped=codec.stats.skipped,
        )
    return call


async def _guarded(handler: Handler, call: Call) -> None:
    try:
        await handler(call)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        ERRORS.note("handler", exc)
        log.exception("handler of %s call %r raised", call.codec.name, call._ident())
        await call.close(CLOSE_INTERNAL, "handler error")
