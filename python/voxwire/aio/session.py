"""One call over any transport: the glue every asyncio adapter shares.

An adapter wraps its connection in a :class:`Transport` (receive one message, send one,
close with a code) and calls :func:`run_call`. Everything else is here, once: the read
loop feeding the codec, limits, deferred token authentication, the codec's timer, the
write loop, the pacer registration, and the :class:`Call` object handed to the
application's handler.

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
from voxwire.pacing import MarkDue, MarkOut, PacedItem, PacedStream
from voxwire.protocols.base import MediaStreamCodec, Outbound
from voxwire.protocols.events import Audio, CallStarted, Event, MarkPlayed, Stopped
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

_END = object()


class Call:
    """One call as the application sees it: events in, paced audio out."""

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
        self._authenticated = authenticated
        #: the claims of the signed per-call token the call authenticated with, if any
        self.credential = credential
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._out: asyncio.Queue[Outbound | None] = asyncio.Queue()
        self.stream: PacedStream | None = None
        #: inbound audio events dropped because the handler fell behind
        self.events_dropped = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._closed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        #: the call's limits as decisions (its clocks start when the read loop does)
        self.policy = CallPolicy(limits, 0.0, authenticated=authenticated)
        #: a process-unique number naming the call in logs before its stream id is known
        self.serial = next(_serial)
        #: the client's address where the transport knows it (for logs and the audit log)
        self.remote = str(getattr(transport, "remote", ""))
        #: while set, :meth:`play` drops the agent's audio (:meth:`mute`)
        self.muted = False
        #: line-rate samples :meth:`play` dropped while muted
        self.muted_samples = 0
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

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            item = await self._events.get()
            if item is _END:
                self._events.put_nowait(_END)
                return
            yield item  # type: ignore[misc]

    def play(self, pcm: object, sample_rate: int | None = None) -> None:
        """Queue audio for paced playback (at ``sample_rate``, default the line rate);
        dropped (and counted in :attr:`muted_samples`) while :attr:`muted`, and dropped
        once the provider has stopped the stream: a handler still working through the
        events queued before the stop is not failed for answering a caller who left."""
        stream = self._require_stream()
        if self.codec.stopped:
            return
        line = self.codec.line_pcm(pcm, sample_rate)
        if self.muted:
            self.muted_samples += len(line)
            return
        stream.push(line)

    def mute(self) -> None:
        """Silence the agent: what is queued is dropped, here and at the provider (as
        :meth:`clear` does), and what it plays next is not sent until :meth:`unmute`.
        Marks still pass, so an agent waiting for its audio to be heard is not stuck."""
        if self.muted:
            return
        self.muted = True
        if self.stream is not None and self.close_code is None:
            self.clear()

    def unmute(self) -> None:
        """Let the agent's audio through again (from what it plays next)."""
        self.muted = False

    def flush(self) -> None:
        """Pad and queue the last partial frame (call at the end of an utterance)."""
        self._require_stream().flush()

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far; a :class:`MarkPlayed` follows."""
        self._require_stream().mark(name)

    def clear(self) -> None:
        """Barge-in: drop queued audio here and at the provider, now."""
        stream = self._require_stream()
        for event in stream.clear():
            self._deliver(event)
        if not self.codec.stopped and self.close_code is None:
            for message in self.codec.send_clear():
                self._out.put_nowait(message)

    @property
    def played_samples(self) -> int:
        """Line-rate samples the caller is known to have heard (from marks)."""
        return self.stream.played_samples if self.stream else 0

    @property
    def played_seconds(self) -> float:
        """:attr:`played_samples` in seconds of line-rate audio."""
        return self.stream.played_seconds if self.stream else 0.0

    def playout_position(self, now: float) -> int:
        """Line-rate samples the phone has played by ``now`` (the send clock's estimate,
        :meth:`voxwire.pacing.PacedStream.playout_position`); 0 before the call starts."""
        return self.stream.playout_position(now) if self.stream else 0

    @property
    def committed_samples(self) -> int:
        """Line-rate samples the caller hears whatever happens now: those its marks have
        confirmed played (a clear drops the rest at the provider)."""
        return self.stream.played_samples if self.stream else 0

    @property
    def queued_total(self) -> int:
        """Line-rate samples queued since the call started: where the next audio begins."""
        return self.stream.queued_total if self.stream else 0

    @property
    def queued_samples(self) -> int:
        """Line-rate samples waiting in the pacer."""
        return self.stream.queued_samples if self.stream else 0

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close the connection (idempotent)."""
        self._close_now(code, reason)

    def _close_now(self, code: int, reason: str) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        self._out.put_nowait(None)
        self._closed.set()

    def _require_stream(self) -> PacedStream:
        if self.stream is None:
            raise RuntimeError("the call has not started yet: wait for CallStarted")
        return self.stream

    # --- internals -------------------------------------------------------------------

    def _deliver(self, event: Event) -> None:
        if isinstance(event, Audio) and self._events.qsize() >= self.limits.max_pending_events:
            self.events_dropped += 1
            return
        self._events.put_nowait(event)

    def _sink(self, item: PacedItem) -> None:
        try:
            self._sink_item(item)
        except Exception as exc:
            self._fail("sink", exc)

    def _sink_item(self, item: PacedItem) -> None:
        if self.codec.stopped or self.close_code is not None:
            return  # the stream ended with audio still queued: nothing more goes out
        if isinstance(item, MarkOut):
            messages = self.codec.send_mark(item.name)
        elif isinstance(item, MarkDue):
            self._deliver(MarkPlayed(item.name))
            return
        else:
            messages = self.codec.send_audio(item)
        # A peer that has stopped reading: holding its audio would grow without bound.
        refused = self.policy.check_pending_out(self._out.qsize(), len(messages))
        if refused is not None:
            self._close_for(refused)
            return
        for message in messages:
            self._out.put_nowait(message)

    @property
    def authenticated(self) -> bool:
        """Whether the call has shown a valid token (or none was asked for)."""
        return self._authenticated

    def _on_started(self, started: CallStarted) -> str:
        """Open the paced stream; the reason when the start is refused."""
        if not self._authenticated:
            if self._auth is None:
                return "authentication failed"
            credential = self._auth.check_started(started)
            if not credential.ok:
                return f"authentication failed: {credential.reason}"
            self._authenticated = True
            self.policy.authenticated()
            self.credential = credential.claims
        fmt = started.media_format
        self.stream = PacedStream(
            fmt.sample_rate,
            frame_ms=self.codec.frame_ms,
            local_marks=not self.codec.supports_marks,
            name=started.stream_id,
        )
        self._pacer.open(self.stream, self._sink)
        claims = self.credential
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
        return ""

    def _dispatch(self, events: list[Event]) -> bool:
        """Route codec events; False when the call must end."""
        for event in events:
            if isinstance(event, CallStarted):
                if self.stream is not None:
                    # AudioSocket re-announces the rate: restart the paced stream
                    self._pacer.close(self.stream)
                    self.stream = None
                    self._authenticated = True
                    self.policy.authenticated()
                refused = self._on_started(event)
                if refused:
                    self._limit("auth", CLOSE_POLICY, refused)
                    return False
            elif not self._authenticated:
                continue
            if isinstance(event, MarkPlayed) and self.stream is not None:
                resolved = self.stream.resolve_mark(event.name)
                if resolved is None:
                    continue
                event = resolved
            self._deliver(event)
            if isinstance(event, Stopped):
                return False
        return True

    def _close_for(self, decision: CloseDecision) -> None:
        self._limit(decision.kind, decision.code, decision.reason)

    def _limit(self, kind: str, code: int, reason: str) -> None:
        """Close for a limit (or a failed authentication): log, count, close."""
        if self.close_code is not None:
            return
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
        self._events.put_nowait(_END)
        self._close_now(code, reason)

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
        if self.close_code is None:
            self._events.put_nowait(_END)
            self._close_now(code, reason)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.codec.get_timer()
        if when is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(when, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        if self.close_code is not None:
            return
        try:
            events = self.codec.handle_timer(asyncio.get_running_loop().time())
            if self._dispatch(events):
                self._arm_timer()
        except Exception as exc:
            self._fail("timer", exc)

    def _check_idle(self) -> None:
        """The one idle timer: close if nothing came for ``idle_timeout``, else re-arm."""
        self._idle = None
        if self.close_code is not None:
            return
        loop = asyncio.get_running_loop()
        refused = self.policy.check_idle(loop.time())
        if refused is not None:
            self._close_for(refused)
        else:
            self._idle = loop.call_at(self.policy.idle_due, self._check_idle)

    def _check_auth_deadline(self) -> None:
        self._deadline = None
        if self._authenticated or self.close_code is not None:
            return
        loop = asyncio.get_running_loop()
        refused = self.policy.check_auth_deadline(loop.time())
        if refused is not None:
            self._close_for(refused)
        elif self.policy.auth_due is not None:  # woken a clock tick early
            self._deadline = loop.call_at(self.policy.auth_due, self._check_auth_deadline)

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        limits = self.limits
        recv = self.transport.recv
        codec = self.codec
        stats = codec.stats
        logged: set[str] = set()
        policy = self.policy = CallPolicy(limits, loop.time(), authenticated=self._authenticated)
        self._idle = loop.call_at(policy.idle_due, self._check_idle)
        if policy.auth_due is not None:
            self._deadline = loop.call_at(policy.auth_due, self._check_auth_deadline)
        stage = "recv"
        try:
            while self.close_code is None:
                stage = "recv"
                try:
                    message = await recv()
                except ConnectionClosed as exc:
                    if exc.local and exc.code == CLOSE_TOO_BIG:
                        self._close_for(policy.too_big_closed(exc.reason))
                    return
                now = loop.time()
                refused = policy.received(len(message), now)
                if refused is not None:
                    self._close_for(refused)
                    return
                stage = "receive"
                samples = stats.audio_samples_in
                events = codec.receive(message, now)
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
                audio = stats.audio_samples_in - samples
                started = codec.started
                seconds = (
                    audio / started.media_format.sample_rate
                    if audio and started is not None
                    else 0.0
                )
                refused = policy.charge(now, seconds)
                if refused is not None:
                    self._close_for(refused)
                    return
                stage = "dispatch"
                if not self._dispatch(events):
                    return
                stage = "timer"
                self._arm_timer()
        except Exception as exc:
            self._fail(stage, exc)
        finally:
            if self._idle is not None:  # idleness is the reader's to judge, not the grace's
                self._idle.cancel()
                self._idle = None
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._events.put_nowait(_END)

    async def _write_loop(self) -> None:
        while True:
            message = await self._out.get()
            if message is None:
                return
            try:
                await self.transport.send(message)
            except ConnectionClosed:
                return
            except Exception as exc:
                self._fail("writer", exc)
                return

    async def _probe_loop(self, probe: Callable[[], Awaitable[None]]) -> None:
        """Probe the peer's reading (see "Slow peers"); close it when it lags."""
        limits = self.limits
        while self.close_code is None:
            await asyncio.sleep(limits.read_probe_interval)
            if self.close_code is not None:
                return
            try:
                await asyncio.wait_for(probe(), limits.max_read_lag)
            except asyncio.TimeoutError:
                self._close_for(self.policy.read_lag_exceeded())
                return
            except ConnectionClosed:
                return

    def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.stream is not None:
            self._pacer.close(self.stream)


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
    reader = loop.create_task(call._read_loop())
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
            call._events.put_nowait(_END)
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
            audio_in_seconds=round(
                codec.stats.audio_samples_in / started.media_format.sample_rate, 3
            )
            if started
            else 0.0,
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
