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
    Ends that session (``200``; ``404`` for an unknown id).

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
import logging
from collections import Counter
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from voxwire.aio.rtp_call import RtpHandler
from voxwire.security import TokenAuth
from voxwire.webrtc.peer import WebRtcPeer, WebRtcUnavailable
from voxwire.webrtc.sdp import MAX_SDP_BYTES, SdpError

__all__ = ["WebRtcServer"]

log = logging.getLogger("voxwire.webrtc")


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
        The token every WHIP request must carry.
    pipeline_rate, idle_timeout, opus_bitrate, opus_loss_percent :
        For each call (:class:`~voxwire.webrtc.peer.WebRtcPeer`).
    """

    def __init__(
        self,
        handler: RtpHandler,
        *,
        max_sessions: int = 100,
        auth: TokenAuth | None = None,
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
        self.pipeline_rate = pipeline_rate
        self.idle_timeout = idle_timeout
        self.opus_bitrate = opus_bitrate
        self.opus_loss_percent = opus_loss_percent
        #: the calls under way, by session id
        self.peers: dict[str, WebRtcPeer] = {}
        #: requests refused, by HTTP status
        self.refused: Counter[int] = Counter()
        #: calls answered since the server started
        self.answered = 0

    def app(self) -> Any:
        """The aiohttp application (to run it yourself, or mount it in yours)."""
        from aiohttp import web

        app = web.Application(client_max_size=MAX_SDP_BYTES + 1024)
        app.router.add_get("/", self._page)
        app.router.add_route("OPTIONS", "/whip", self._options)
        app.router.add_post("/whip", self._offer)
        app.router.add_delete("/whip/{id}", self._delete)
        app.router.add_patch("/whip/{id}", self._patch)
        app.on_shutdown.append(self._shutdown)
        return app

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 8080) -> AsyncIterator[str]:
        """Listen on ``host:port`` (0: a free port) while the block runs; yield the page's
        URL. On exit every call is closed."""
        from aiohttp import web

        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        try:
            yield f"http://{host}:{bound}/"
        finally:
            await runner.cleanup()

    async def aclose(self) -> None:
        """Close every call."""
        peers = list(self.peers.values())
        self.peers.clear()
        await asyncio.gather(*(p.close("server closing") for p in peers))

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
        if len(self.peers) >= self.max_sessions:
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
        self.peers[peer.id] = peer
        self.answered += 1
        task = peer.start(self.handler)

        def forget(_: asyncio.Task[None], pid: str = peer.id) -> None:
            self.peers.pop(pid, None)

        task.add_done_callback(forget)
        log.info("webrtc %s: answered", peer.id)
        return web.Response(
            status=201,
            body=peer.answer.encode(),
            content_type="application/sdp",
            headers={"Location": f"/whip/{peer.id}"},
        )

    async def _delete(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            return self._refuse(401, "missing or wrong token")
        peer = self.peers.pop(request.match_info["id"], None)
        if peer is None:
            return self._refuse(404, "no such session")
        await peer.close("ended by the browser")
        return web.Response(status=200)

    async def _shutdown(self, app: Any) -> None:
        await self.aclose()
