"""Run an agent as a server: what ``voxwire serve`` does.

:func:`serve_agent` serves any agent (a handler of :class:`voxwire.aio.Call`) for one
protocol, on the ``websockets`` adapter (or the AudioSocket TCP server), with one pacer,
until ``stop`` is set. :func:`serve_echo` serves the echo agent.

Drain
-----
When ``stop`` is set the server drains: its :class:`~voxwire.aio.admission.Admission`
refuses new calls (HTTP 503 before the WebSocket upgrade, the AudioSocket hangup), the
calls up go on until they end, for at most ``drain_timeout`` seconds (or until
``stop_now`` is set), and then every call still up is closed with the protocol's going
away (WebSocket close code 1001, or the AudioSocket hangup) and the listening socket
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from ssl import SSLContext
from typing import TYPE_CHECKING, Any

from voxwire.agents.echo import EchoStats, echo_handler
from voxwire.aio.admission import Admission, serve_agent_check
from voxwire.aio.handshake import ConnectionCaps
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import Call, Handler
from voxwire.protocols import CODECS
from voxwire.protocols.base import MediaStreamCodec
from voxwire.resample import Resampler
from voxwire.security import TokenAuth

if TYPE_CHECKING:
    from voxwire.aio.control import Control
    from voxwire.aio.metrics import ServerMetrics
    from voxwire.recording import Recorder

__all__ = [
    "ACCEPT_BACKLOG",
    "CLOSE_GOING_AWAY",
    "PIPELINE_RATE",
    "WS_LIBRARIES",
    "agent_server",
    "codec_factory",
    "serve_agent",
    "serve_echo",
]

log = logging.getLogger("voxwire.agents")

PIPELINE_RATE = 16000
"""The rate the echo agent listens at (Hz)."""

CLOSE_GOING_AWAY = 1001
"""WebSocket close code sent to every call when the server shuts down."""

ACCEPT_BACKLOG = 1024
#: the WebSocket libraries :func:`serve_agent` serves on (``ws_library=``)
WS_LIBRARIES = ("websockets", "picows")
"""Connections the kernel holds for the WebSocket server before it accepts them. asyncio's
default, 100, is less than a burst of calls starting together: the connections over it
wait for SYN retransmits (1 s, then 3 s, ...) before they are even seen."""


def codec_factory(
    protocol: str, pipeline_rate: int = PIPELINE_RATE
) -> Callable[[], MediaStreamCodec]:
    """A codec per call for ``protocol``, decoding to ``pipeline_rate`` with voxwire's
    resampler (the codecs' ``resampler`` hook)."""
    if protocol not in CODECS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(CODECS)}")
    cls = CODECS[protocol]
    return functools.partial(cls, pipeline_rate=pipeline_rate, resampler=Resampler)


def _log_call(call: Call, stats: EchoStats) -> None:
    started = call.started
    log.info(
        "%s call %r ended: %d utterance(s) echoed (%.1f s), %d played out, %d barge-in(s), "
        "%d bad message(s) skipped",
        call.codec.name,
        started.stream_id if started else "(not started)",
        stats.utterances,
        stats.reply_seconds,
        stats.replies_played,
        stats.barge_ins,
        call.stats.skipped,
    )


async def serve_echo(
    protocol: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    path: str | None = None,
    lead: float = 0.06,
    hangover_ms: int = 200,
    auth: TokenAuth | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
    on_end: Callable[[Call, EchoStats], None] | None = None,
    **options: Any,
) -> None:
    """Serve the echo agent for ``protocol`` until ``stop`` is set (forever without one).

    ``hangover_ms`` is the silence that ends a caller's turn; ``on_end`` receives each
    call and its :class:`~voxwire.agents.echo.EchoStats` when the call ends (by default
    they are logged). The other arguments, and ``options`` (``admission``,
    ``drain_timeout``, ...), are :func:`serve_agent`'s.
    """
    ended = on_end or _log_call
    metrics: ServerMetrics | None = options.get("metrics")
    if metrics is not None:
        user = ended

        def both(call: Call, stats: EchoStats) -> None:
            metrics.echo_ended(call, stats)
            user(call, stats)

        ended = both
    await serve_agent(
        functools.partial(
            echo_handler,
            rate=PIPELINE_RATE,
            hangover_ms=hangover_ms,
            on_end=ended,
        ),
        protocol,
        host,
        port,
        pipeline_rate=PIPELINE_RATE,
        path=path,
        lead=lead,
        auth=auth,
        stop=stop,
        ready=ready,
        **options,
    )


async def serve_agent(
    handler: Handler,
    protocol: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    pipeline_rate: int = PIPELINE_RATE,
    path: str | None = None,
    lead: float = 0.06,
    auth: TokenAuth | None = None,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
    admission: Admission | None = None,
    drain_timeout: float = 0.0,
    stop_now: asyncio.Event | None = None,
    reuse_port: bool = False,
    agent_check: tuple[str, int] | None = None,
    metrics: ServerMetrics | None = None,
    ssl: SSLContext | None = None,
    caps: ConnectionCaps | None = None,
    recorder: Recorder | None = None,
    control: Control | None = None,
    ws_library: str = "websockets",
) -> None:
    """Serve ``handler`` (an agent) for ``protocol`` until ``stop`` is set.

    ``ready`` is called with the server's URL once it listens (``port=0`` picks a free
    port). WebSocket protocols accept the media stream on ``path``, or on any path when
    it is None, and decode caller audio to ``pipeline_rate``; AudioSocket listens for
    TCP connections and delivers the line rate. ``lead`` is the pacer's lead. ``auth``
    checks a shared token on every WebSocket connection (AudioSocket carries none).
    ``admission`` decides which calls are taken (a new one without a call limit by
    default). On ``stop`` the server drains (see the module docstring) for at most
    ``drain_timeout`` seconds, or until ``stop_now`` is set; ``reuse_port`` binds with
    ``SO_REUSEPORT`` so that several worker processes share the port. WebSocket servers
    answer ``GET /health`` and ``GET /ready`` on their port; ``agent_check`` (host, port)
    adds the HAProxy agent-check responder (:func:`~voxwire.aio.admission.
    serve_agent_check`), open until the server stops, drain included. ``metrics`` counts
    every call that ends (and logs its summary) and answers ``GET /metrics`` on the
    WebSocket port (:class:`~voxwire.aio.metrics.ServerMetrics`). ``ssl``
    (:func:`voxwire.aio.tls.server_context`) serves ``wss://``, or AudioSocket over TLS
    (``tls://``). ``caps`` bounds the WebSocket connections
    (:class:`~voxwire.aio.handshake.ConnectionCaps`). ``recorder`` records every call
    (:class:`~voxwire.recording.Recorder`; nothing is recorded without one). ``control``
    serves the control API on the WebSocket port (:class:`~voxwire.aio.control.Control`:
    list the calls, hang up, mute). ``ws_library`` is the WebSocket library: ``"websockets"`` (the
    default) or ``"picows"`` (:mod:`voxwire.aio.picows_server`; no control API there).
    """
    if ws_library not in WS_LIBRARIES:
        raise ValueError(f"unknown WebSocket library {ws_library!r}; choose from {WS_LIBRARIES}")
    if ws_library == "picows" and control is not None:
        raise ValueError("the control API needs the websockets library (picows reads GET only)")
    if protocol not in CODECS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(CODECS)}")
    if not drain_timeout >= 0:
        raise ValueError(f"drain_timeout must be >= 0 seconds, got {drain_timeout}")
    stop = stop or asyncio.Event()
    admission = admission if admission is not None else Admission()
    pacer = Pacer(lead)
    calls: set[Call] = set()

    async def tracked(call: Call) -> None:
        calls.add(call)
        if metrics is not None:
            metrics.call_started(call)
        if control is not None:
            control.call_started(call)
        try:
            await (handler(call) if recorder is None else recorder.record(handler, call))
        finally:
            calls.discard(call)
            if control is not None:
                control.call_ended(call)

    async def drain() -> None:
        admission.start_drain()
        if not calls or drain_timeout == 0:
            return
        log.info("draining: %d call(s) up, for at most %g s", len(calls), drain_timeout)
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(admission.wait_drained())]
        if stop_now is not None:
            waits.append(asyncio.ensure_future(stop_now.wait()))
        try:
            await asyncio.wait(waits, timeout=drain_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if calls:
            log.info("drain over: closing %d call(s) still up", len(calls))

    async def shut_down() -> None:
        for call in list(calls):
            await call.close(CLOSE_GOING_AWAY, "server shutting down")
        # let each call's writer close its connection
        for _ in range(100):
            if not calls:
                break
            await asyncio.sleep(0.02)
        await pacer.aclose()

    async with contextlib.AsyncExitStack() as stack:
        if agent_check is not None:
            checker = await serve_agent_check(admission, *agent_check, reuse_port=reuse_port)
            stack.push_async_callback(_close, checker)
            at = checker.sockets[0].getsockname()
            log.info("agent check on %s:%d", at[0], at[1])
        if CODECS[protocol].transport == "tcp":  # AudioSocket
            if auth is not None:
                raise ValueError("AudioSocket carries no token: protect it at the network level")
            if control is not None:
                raise ValueError("AudioSocket has no HTTP port for the control API")
            from voxwire.aio.tcp import serve_audiosocket

            tcp = await serve_audiosocket(
                tracked,
                host,
                port,
                pacer=pacer,
                admission=admission,
                reuse_port=reuse_port,
                on_end=None if metrics is None else metrics.call_ended,
                ssl=ssl,
            )
            async with tcp:
                bound = tcp.sockets[0].getsockname()
                if ready is not None:
                    ready(f"{'tcp' if ssl is None else 'tls'}://{bound[0]}:{bound[1]}")
                await stop.wait()
                await drain()
                tcp.close()
                await shut_down()
            return

        # what either WebSocket library's server takes alike
        common: dict[str, Any] = {
            "path": path,
            "auth": auth,
            "pacer": pacer,
            "admission": admission,
            "metrics": None if metrics is None else metrics.exposition,
            "on_end": None if metrics is None else metrics.call_ended,
            "reuse_port": reuse_port or None,
            "ssl": ssl,
            "caps": caps,
            "backlog": ACCEPT_BACKLOG,
        }
        if ws_library == "picows":
            from voxwire.aio.picows_server import serve as picows_serve

            server = await picows_serve(
                tracked, codec_factory(protocol, pipeline_rate), host, port, **common
            )
            async with server:
                bound = server.sockets[0].getsockname()
                if ready is not None:
                    scheme = "ws" if ssl is None else "wss"
                    ready(f"{scheme}://{bound[0]}:{bound[1]}{path or '/'}")
                await stop.wait()
                await drain()
                server.close()  # stops listening; the calls up are closed next
                await shut_down()
            return

        from voxwire.aio.websockets_server import serve

        async with serve(
            tracked,
            codec_factory(protocol, pipeline_rate),
            host,
            port,
            **common,
            control=None
            if control is None
            else (
                lambda method, at, authorization: control.answer(method, at, authorization, calls)
            ),
        ) as ws:
            bound = next(iter(ws.sockets)).getsockname()
            if ready is not None:
                ready(f"{'ws' if ssl is None else 'wss'}://{bound[0]}:{bound[1]}{path or '/'}")
            await stop.wait()
            await drain()
            ws.close(close_connections=False)
            await shut_down()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 3.0)


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


@contextlib.asynccontextmanager
async def agent_server(
    handler: Handler,
    protocol: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    pipeline_rate: int | None = None,
    **options: Any,
) -> AsyncIterator[str]:
    """Serve ``handler`` for ``protocol`` while the block runs; yield the server's URL.

    For tests, benchmarks and demos: ``port=0`` picks a free port; ``pipeline_rate``
    defaults to the handler's ``pipeline_rate`` (a :class:`~voxwire.agents.pipeline.
    VoiceAgent` has one) or :data:`PIPELINE_RATE`; ``options`` go to :func:`serve_agent`.
    On exit every call is closed and the server stops::

        async with agent_server(agent, "twilio") as url:
            report = await place_dialog(url, "twilio", turns)
    """
    if pipeline_rate is None:
        pipeline_rate = getattr(handler, "pipeline_rate", PIPELINE_RATE)
    stop = asyncio.Event()
    urls: list[str] = []
    server = asyncio.create_task(
        serve_agent(
            handler,
            protocol,
            host,
            port,
            pipeline_rate=pipeline_rate,
            stop=stop,
            ready=urls.append,
            **options,
        )
    )
    try:
        while not urls and not server.done():
            await asyncio.sleep(0.005)
        if not urls:
            await server  # raises what stopped it
            raise RuntimeError(f"the {protocol} server stopped before it listened")
        yield urls[0]
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
