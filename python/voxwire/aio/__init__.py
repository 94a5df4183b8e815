"""asyncio adapters: they move bytes and time; the protocol logic lives in the codecs.

* :func:`voxwire.aio.websockets_server.serve`: a standalone server on the ``websockets``
  package (``pip install "voxwire[websockets]"``);
* :class:`voxwire.aio.asgi.MediaStreamApp`: an ASGI application for Starlette, FastAPI or
  any ASGI server (no extra dependency);
* :func:`voxwire.aio.aiohttp_adapter.media_stream_handler`: an aiohttp request handler
  (``pip install "voxwire[aiohttp]"``);
* :func:`voxwire.aio.tcp.serve_audiosocket`: a TCP server for Asterisk AudioSocket;
* :class:`voxwire.aio.rtp.RtpEndpoint`: a UDP endpoint for one RTP stream (its own
  playout clock; see :mod:`voxwire.aio.rtp`); :func:`voxwire.aio.rtp_call.serve_rtp` runs
  one call per RTP peer on it (:class:`~voxwire.aio.rtp_call.RtpCall`);
* :func:`voxwire.aio.sip.serve_sip`: a SIP server over UDP that answers INVITEs and runs
  an RTP call per answered call (:class:`~voxwire.aio.sip.SipCall`).

The WebSocket and TCP adapters run each call through
:func:`voxwire.aio.session.run_call`, and hand the application a
:class:`~voxwire.aio.session.Call`; RTP calls are :class:`~voxwire.aio.rtp_call.RtpCall`
(SIP calls a subclass of it).
Both are a :class:`~voxwire.aio.surface.CallSurface`, the one surface agents are written
against. All of them pace outbound audio with the process's one
:class:`~voxwire.aio.pacer.Pacer`.
"""

from __future__ import annotations

from voxwire.aio.pacer import Pacer, get_pacer
from voxwire.aio.rtp import RtpEndpoint
from voxwire.aio.rtp_call import RtpCall, RtpServer, run_rtp_call, serve_rtp
from voxwire.aio.session import (
    CLOSE_IDLE,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SLOW_PEER,
    CLOSE_TOO_BIG,
    Call,
    Handler,
    Limits,
    Transport,
    run_call,
)
from voxwire.aio.surface import CallSurface

__all__ = [
    "CLOSE_IDLE",
    "CLOSE_INTERNAL",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SLOW_PEER",
    "CLOSE_TOO_BIG",
    "Call",
    "CallSurface",
    "Handler",
    "Limits",
    "Pacer",
    "RtpCall",
    "RtpEndpoint",
    "RtpServer",
    "Transport",
    "get_pacer",
    "run_call",
    "run_rtp_call",
    "serve_rtp",
]
