"""WebRTC signalling over HTTP (WHIP, RFC 9725) and the talk-to-the-agent page, on aiohttp.

>>> async def main():                                                  # doctest: +SKIP
...     async with WebRtcServer(echo_handler).serve("127.0.0.1", 8080) as url:
...         await asyncio.Event().wait()        # open url in a browser and press "talk"

Routes
------
``GET /``
    The page (:file:`static/talk.html`; no build step, no external script): a talk
    button, the connection's state, a level meter of the caller's microphone and of
    the agent's voice.
``POST /whip``
    A WHIP session: the body is the browser's SDP offer (``Content-Type:
    application/sdp``) with its ICE candidates in it (the page waits for gathering to
    complete; trickle ICE, WHIP's PATCH, is not supported and answered 405). The answer
    is ``201 Created`` with ``Location: /whip/<id>`` and the SDP answer, every candidate
    included. ``OPTIONS /whip`` answers ``204`` with ``Accept-Post: application/sdp``.
``DELETE /whip/<id>``
    Ends that session (``200``; ``404`` for an unknown id). With a token set, the request
    carries the token that opened the session (a signed token is single-use: it opened
    the session, it may also end it, but opens no other).
``GET /whip/<id>/events``
    The call's transcript as Server-Sent Events, when the handler is a
    :class:`~voxwire.agents.pipeline.VoiceAgent`: one ``turn`` event per turn as its
    reply ends, ``data`` a JSON object ``{"user": ..., "agent": ..., "interrupted":
    ...}`` (what the caller said, what the caller heard of the reply), and an ``end``
    event when the call ends. The session id (128 random bits) is what authorises it:
    ``EventSource`` cannot send a header.

``GET /ws``
    The page's fallback when the browser has no WebRTC (or the page is opened with
    ``?ws=1``): the same handler over voxwire's raw-PCM WebSocket dialect
    (:mod:`voxwire.webrtc.fallback`), the token checked on the upgrade (``401``), at most
    ``max_sessions`` calls of either kind (``503``).

With ``tls`` (an :class:`ssl.SSLContext`, :func:`voxwire.aio.tls.server_context`) the page
and the signalling are served over HTTPS, which browsers require before they give a page
the microphone anywhere but on localhost.

Errors, each with a short reason in the text body: ``401`` without the token (when one
is set: ``Authorization: Bearer <token>``, as RFC 9725 section 4.5 has it, or
``?token=``), ``415`` for a body that is not ``application/sdp``, ``413`` for an offer
over :data:`~voxwire.webrtc.sdp.MAX_SDP_BYTES`, ``400`` for an offer with no Opus audio
or that aiortc cannot parse, ``503`` when ``max_sessions`` calls are under way, ``501``
when aiortc is missing or unusable. Every refusal is counted in
:attr:`WebRtcServer.refused` by status.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hmac
import json
import logging
import secrets
import ssl
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any, cast

from voxwire.aio.rtp_call import RtpCall, RtpHandler
from voxwire.security import TokenAuth
from voxwire.webrtc.peer import WebRtcPeer, WebRtcUnavailable
from voxwire.webrtc.sdp import MAX_SDP_BYTES, SdpError

__all__ = ["WebRtcServer"]

log = logging.getLogger("voxwire.webrtc")


#: turns kept for a page that subscribes late, and queued for one that reads slowly
MAX_TURNS = 64


class Transcript:
    """The turns of one call, for its page: each subscriber gets those so far, then the
    next ones as they come. Bounded: the last :data:`MAX_TURNS` are kept, and a
    subscriber that falls :data:`MAX_TURNS` behind loses the oldest (counted in
    ``dropped``)."""

    def __init__(self) -> None:
        self.turns: deque[dict[str, Any]] = deque(maxlen=MAX_TURNS)
        self.ended = False
        self.dropped = 0
        self._queues: list[asyncio.Queue[dict[str, Any] | None]] = []

    def add(self, turn: dict[str, Any]) -> None:
        self.turns.append(turn)
        for queue in self._queues:
            self._put(queue, turn)

    def end(self) -> None:
        self.ended = True
        for queue in self._queues:
            self._put(queue, None)

    def _put(self, queue: asyncio.Queue[dict[str, Any] | None], item: Any) -> None:
        if queue.qsize() >= MAX_TURNS:
            queue.get_nowait()
            self.dropped += 1
        queue.put_nowait(item)

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """The turns so far, then each new one, until the call ends."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(MAX_TURNS + 1)
        for turn in self.turns:
            queue.put_nowait(turn)
        if self.ended:
            queue.put_nowait(None)
        self._queues.append(queue)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._queues.remove(queue)


# the transcript of the call whose handler runs in this context (the agent's tasks inherit it)
_TRANSCRIPT: contextvars.ContextVar[Transcript | None] = contextvars.ContextVar(
    "voxwire_webrtc_transcript", default=None
)


def _publish_turns(agent: Any) -> None:
    """Chain ``agent.on_turn`` so that each turn also reaches its call's :class:`Transcript`."""
    user: Callable[[Any, Any], None] | None = agent.on_turn

    def on_turn(turn: Any, history: Any) -> None:
        transcript = _TRANSCRIPT.get()
        if transcript is not None:
            transcript.add(
                {
                    "user": turn.user_text,
                    "agent": turn.heard_text or ("" if turn.interrupted else turn.reply_text),
                    "interrupted": turn.interrupted,
                }
            )
        if user is not None:
            user(turn, history)

    agent.on_turn = on_turn


def page() -> bytes:
    """The talk page's HTML."""
    return resources.files("voxwire.webrtc").joinpath("static/talk.html").read_bytes()


class WebRtcServer:
    """Browser calls to ``handler`` over WebRTC; see the module docstring.

    Parameters
    ----------
    handler : async callable
        ``await handler(call)`` for each call (an :class:`~voxwire.aio.rtp_call.RtpCall`):
        the echo agent, a :class:`~voxwire.agents.pipeline.VoiceAgent`...
    max_sessions : int
        Calls at once; more are refused with 503.
    auth : TokenAuth, optional
        The token every WHIP request must carry (a shared token, or signed single-use
        tokens of a :class:`~voxwire.security.CallTokens`).
    tls : ssl.SSLContext, optional
        Serve over HTTPS with this context.
    pipeline_rate, idle_timeout, opus_bitrate, opus_loss_percent :
        For each call (:class:`~voxwire.webrtc.peer.WebRtcPeer`).
    """

    def __init__(
        self,
        handler: RtpHandler,
        *,
        max_sessions: int = 100,
        auth: TokenAuth | None = None,
        tls: ssl.SSLContext | None = None,
        pipeline_rate: int = 16000,
        idle_timeout: float = 15.0,
        opus_bitrate: int = 32000,
        opus_loss_percent: int = 10,
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        self.handler = handler
        self.max_sessions = max_sessions
        self.auth = auth
        self.tls = tls
        self.pipeline_rate = pipeline_rate
        self.idle_timeout = idle_timeout
        self.opus_bitrate = opus_bitrate
        self.opus_loss_percent = opus_loss_percent
        #: the calls under way, by session id (the ``/whip/<id>`` of their resource)
        self.peers: dict[str, WebRtcPeer] = {}
        #: each call's transcript, by session id, while the call is under way
        self.transcripts: dict[str, Transcript] = {}
        self._owners: dict[str, str] = {}  # the token that opened each session
        if hasattr(handler, "on_turn"):  # a VoiceAgent: its turns go to the page
            _publish_turns(handler)
        #: requests refused, by HTTP status
        self.refused: Counter[int] = Counter()
        #: calls answered since the server started (WebRTC and WebSocket)
        self.answered = 0
        #: the raw-PCM WebSocket calls under way (the fallback)
        self.websockets = 0
        self._sockets: set[Any] = set()

    def app(self) -> Any:
        """The aiohttp application (to run it yourself, or mount it in yours)."""
        from aiohttp import web

        app = web.Application(client_max_size=MAX_SDP_BYTES + 1024)
        app.router.add_get("/", self._page)
        app.router.add_route("OPTIONS", "/whip", self._options)
        app.router.add_post("/whip", self._offer)
        app.router.add_delete("/whip/{id}", self._delete)
        app.router.add_patch("/whip/{id}", self._patch)
        app.router.add_get("/whip/{id}/events", self._events)
        app.router.add_get("/ws", self._websocket)
        app.on_shutdown.append(self._shutdown)
        return app

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 8080) -> AsyncIterator[str]:
        """Listen on ``host:port`` (0: a free port) while the block runs; yield the page's
        URL. On exit every call is closed."""
        from aiohttp import web

        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=self.tls)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        try:
            yield f"{'https' if self.tls else 'http'}://{host}:{bound}/"
        finally:
            await runner.cleanup()

    async def aclose(self) -> None:
        """Close every call."""
        peers = list(self.peers.values())
        self.peers.clear()
        await asyncio.gather(*(p.close("server closing") for p in peers))
        sockets = list(self._sockets)
        await asyncio.gather(*(ws.close(code=1001, message=b"server closing") for ws in sockets))

    # --- handlers --------------------------------------------------------------------

    def _refuse(self, status: int, reason: str) -> Any:
        from aiohttp import web

        self.refused[status] += 1
        log.info("webrtc: refused %d: %s", status, reason)
        return web.Response(status=status, text=reason + "\n")

    def _authorised(self, request: Any) -> bool:
        if self.auth is None:
            return True
        return self.auth.check_request(dict(request.headers), dict(request.query))

    @staticmethod
    def _presented(request: Any) -> str:
        """The token a request shows (``Authorization: Bearer``, ``X-Voxwire-Token`` or
        ``?token=``), or ""."""
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return str(auth[7:].strip())
        return str(request.headers.get("X-Voxwire-Token") or request.query.get("token", ""))

    async def _page(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(body=page(), content_type="text/html", charset="utf-8")

    async def _options(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(status=204, headers={"Accept-Post": "application/sdp"})

    async def _patch(self, request: Any) -> Any:
        return self._refuse(405, "trickle ICE is not supported: send every candidate in the offer")

    async def _offer(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            return self._refuse(401, "missing or wrong token")
        if request.content_type != "application/sdp":
            return self._refuse(415, "the offer must be application/sdp")
        if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
            return self._refuse(413, f"the offer is longer than {MAX_SDP_BYTES} bytes")
        if len(self.peers) + self.websockets >= self.max_sessions:
            return self._refuse(503, f"{self.max_sessions} calls under way")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, f"the offer is longer than {MAX_SDP_BYTES} bytes")
        if len(body) > MAX_SDP_BYTES:
            return self._refuse(413, f"the offer is longer than {MAX_SDP_BYTES} bytes")
        try:
            sdp = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(400, "the offer is not UTF-8")
        try:
            peer = await WebRtcPeer.accept(
                sdp,
                pipeline_rate=self.pipeline_rate,
                idle_timeout=self.idle_timeout,
                opus_bitrate=self.opus_bitrate,
                opus_loss_percent=self.opus_loss_percent,
            )
        except SdpError as exc:
            return self._refuse(400, f"{exc.reason}: {exc}")
        except WebRtcUnavailable as exc:
            return self._refuse(501, str(exc))
        except ValueError as exc:  # aiortc's own SDP checks
            return self._refuse(400, f"invalid offer: {exc}")
        session = secrets.token_urlsafe(16)
        transcript = Transcript()
        self.peers[session] = peer
        self.transcripts[session] = transcript
        self._owners[session] = self._presented(request)
        self.answered += 1
        task = peer.start(functools.partial(self._run, transcript))

        def forget(_: asyncio.Task[None], sid: str = session) -> None:
            self.peers.pop(sid, None)
            self._owners.pop(sid, None)
            ended = self.transcripts.pop(sid, None)
            if ended is not None:
                ended.end()

        task.add_done_callback(forget)
        log.info("webrtc %s: answered", peer.id)
        return web.Response(
            status=201,
            body=peer.answer.encode(),
            content_type="application/sdp",
            headers={"Location": f"/whip/{session}"},
        )

    async def _run(self, transcript: Transcript, call: RtpCall) -> None:
        _TRANSCRIPT.set(transcript)
        await self.handler(call)

    async def _websocket(self, request: Any) -> Any:
        from aiohttp import web

        from voxwire.agents.server import codec_factory
        from voxwire.aio.session import Handler, Limits, run_call
        from voxwire.webrtc.fallback import AiohttpTransport

        claims = None
        if self.auth is not None:
            credential = self.auth.check_credential(dict(request.headers), dict(request.query))
            if not credential.ok:
                return self._refuse(401, credential.reason or "missing or wrong token")
            claims = credential.claims
        if len(self.peers) + self.websockets >= self.max_sessions:
            return self._refuse(503, f"{self.max_sessions} calls under way")
        limits = Limits()
        ws = web.WebSocketResponse(max_msg_size=limits.max_message_bytes, heartbeat=None)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.websockets += 1
        self.answered += 1
        log.info("webrtc: raw-PCM WebSocket call from %s", request.remote)
        try:
            await run_call(
                codec_factory("rawpcm", self.pipeline_rate)(),
                AiohttpTransport(ws),
                # a media-stream Call: the agents take any CallSurface (echo, VoiceAgent)
                cast(Handler, self.handler),
                limits=limits,
                auth=self.auth,
                credential=claims,
            )
        finally:
            self.websockets -= 1
            self._sockets.discard(ws)
        return ws

    async def _events(self, request: Any) -> Any:
        from aiohttp import web

        transcript = self.transcripts.get(request.match_info["id"])
        if transcript is None:
            return self._refuse(404, "no such session")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the page went away
            await response.write(b": voxwire transcript\n\n")
            async for turn in transcript.follow():
                await response.write(f"event: turn\ndata: {json.dumps(turn)}\n\n".encode())
            await response.write(b"event: end\ndata: {}\n\n")
        return response

    async def _delete(self, request: Any) -> Any:
        from aiohttp import web

        session = request.match_info["id"]
        owner = self._owners.get(session)
        if owner is None:
            return self._refuse(404, "no such session")
        if self.auth is not None and not hmac.compare_digest(
            self._presented(request).encode(), owner.encode()
        ):
            return self._refuse(401, "not the token that opened the session")
        peer = self.peers.pop(session)
        await peer.close("ended by the browser")
        return web.Response(status=200)

    async def _shutdown(self, app: Any) -> None:
        await self.aclose()
