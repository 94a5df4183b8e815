"""A TCP server for Asterisk AudioSocket (asyncio streams, no dependency).

::

    from voxwire.aio.tcp import serve_audiosocket

    server = await serve_audiosocket(handler, "0.0.0.0", 9092)
    async with server:
        await server.serve_forever()

and in the dialplan ``AudioSocket(<uuid>,server.example.com:9092)`` or
``Dial(AudioSocket/server.example.com:9092/<uuid>)``. When the handler returns, the server
sends the hangup message and closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl as _ssl
from collections.abc import Callable

from voxwire.aio.admission import Admission
from voxwire.aio.pacer import Pacer
from voxwire.aio.session import Call, Handler, Limits, run_call
from voxwire.errors import ConnectionClosed
from voxwire.protocols.audiosocket import AudioSocketCodec, Kind, pack
from voxwire.protocols.base import Outbound

__all__ = ["StreamTransport", "serve_audiosocket"]


class StreamTransport:
    """A :class:`~voxwire.aio.session.Transport` over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        read_size: int = 4096,
        hangup: bytes = b"",
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.read_size = read_size
        self.hangup = hangup
        self.closed = False
        peer = writer.get_extra_info("peername")
        #: the client's address, for logs and the audit log
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else ""

    async def recv(self) -> bytes:
        try:
            data = await self.reader.read(self.read_size)
        except ConnectionError as exc:
            raise ConnectionClosed(None, str(exc)) from None
        if not data:
            raise ConnectionClosed(None, "end of stream")
        return data

    async def send(self, message: Outbound) -> None:
        if self.closed or self.writer.is_closing():
            raise ConnectionClosed(None, "closed")
        data = message.encode("utf-8") if isinstance(message, str) else message
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError as exc:
            raise ConnectionClosed(None, str(exc)) from None

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            if self.hangup and not self.writer.is_closing():
                self.writer.write(self.hangup)
                await self.writer.drain()
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def serve_audiosocket(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 9092,
    *,
    sample_rate: int = 8000,
    limits: Limits | None = None,
    pacer: Pacer | None = None,
    admission: Admission | None = None,
    reuse_port: bool = False,
    on_end: Callable[[Call], object] | None = None,
    ssl: _ssl.SSLContext | None = None,
    codec_factory: Callable[[], AudioSocketCodec] | None = None,
) -> asyncio.Server:
    """Start an AudioSocket server; each connection runs ``handler`` on a :class:`Call`.

    With ``admission``, a connection it refuses (draining, full) is hung up at once (the
    hangup message, then the socket closed), before any audio. ``reuse_port`` binds with
    ``SO_REUSEPORT`` (workers sharing the port). ``on_end`` receives each finished
    :class:`~voxwire.aio.session.Call`. ``ssl`` (see :func:`voxwire.aio.tls.server_context`)
    makes it a TLS listener, for peers that reach it through a TLS tunnel.
    ``codec_factory`` makes each connection's codec (as the WebSocket adapters' factories
    do); by default ``AudioSocketCodec(sample_rate=..., resampler=Resampler)``, so that a
    handler may play audio at any rate, as on the WebSocket adapters.
    """
    from voxwire.resample import Resampler

    lim = limits or Limits()
    make_codec: Callable[[], AudioSocketCodec] = (
        codec_factory
        if codec_factory is not None
        else functools.partial(AudioSocketCodec, sample_rate=sample_rate, resampler=Resampler)
    )

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = StreamTransport(reader, writer, hangup=pack(Kind.HANGUP))
        if admission is not None and not admission.admit(writer, lambda: not writer.is_closing()):
            await transport.close(0, "refused")  # the hangup: TCP has no close code
            return
        try:
            call = await run_call(
                make_codec(),
                transport,
                handler,
                pacer=pacer,
                limits=lim,
            )
            if on_end is not None:
                on_end(call)
        finally:
            if admission is not None:
                admission.release(writer)

    return await asyncio.start_server(
        on_connection, host, port, reuse_port=reuse_port or None, ssl=ssl
    )
