"""Gateway: a call bridged to a bot written for a provider's WebSocket media stream.

A bot built for Twilio Media Streams (or Telnyx, Vonage, jambonz, ... any WebSocket
dialect voxwire speaks) runs on a SIP trunk, an RTP stream or a WebRTC caller unchanged:
voxwire plays the provider's side towards it. For each call the gateway opens a WebSocket
to the bot's URL, sends what the provider sends when a call is answered (``connected`` and
``start`` for Twilio), then the caller's audio in the provider's 20 ms messages at the
provider's line rate; what the bot sends back is played to the caller (paced, through the
call's own codec), its marks are echoed once the audio before them has played at the
caller, a clear drops the queued audio at once (a barge-in) and is answered as the
provider answers it, and key presses go on as the provider's DTMF messages (counted as
dropped for a dialect without one: Teler). When either side ends, the other is ended:
the caller's hang-up sends the provider's closing messages and closes the WebSocket; the
bot closing it ends the call.

The provider sides are the simulated providers of :mod:`voxwire.sim.providers`, the one
place each dialect's provider half is written; lenient here: a message the provider
would refuse is counted in :attr:`GatewayStats.unexpected`, not fatal::

    voxwire serve --protocol sip --gateway twilio:wss://bot.example.com/media

>>> gateway("twilio", "ws://127.0.0.1:9/media").protocol
'twilio'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxwire.aio.surface import CallSurface
from voxwire.protocols.events import Audio, Dtmf, MarkPlayed, Stopped
from voxwire.resample import Resampler
from voxwire.sim.providers import PROVIDERS
from voxwire.sim.providers.base import ProviderSide
from voxwire.sim.providers.events import ClearAudio, PlayAudio, PlayMark, Unexpected

__all__ = ["Gateway", "GatewayStats", "gateway"]

log = logging.getLogger(__name__)


@dataclass
class GatewayStats:
    """What one bridged call carried."""

    frames_sent: int = 0
    """20 ms messages of the caller's audio sent to the bot."""
    audio_received_s: float = 0.0
    """Seconds of the bot's audio received (at the provider's rate)."""
    marks: int = 0
    """Marks the bot placed."""
    marks_echoed: int = 0
    """Marks echoed back once their audio had played."""
    clears: int = 0
    """Clears the bot sent."""
    dtmf: int = 0
    """Key presses passed on to the bot."""
    dtmf_dropped: int = 0
    """Key presses the dialect has no message for (Teler)."""
    unexpected: list[str] = field(default_factory=list)
    """Why each message the provider would not have accepted was refused."""
    ended_by: str = ""
    """``caller`` (the call ended first), ``bot`` (it closed the WebSocket) or
    ``connect`` (the bot could not be reached)."""


class Gateway:
    """The call handler of :func:`gateway`; see the module docstring.

    Parameters
    ----------
    protocol : str
        A WebSocket dialect of :data:`voxwire.sim.providers.PROVIDERS` (not AudioSocket).
    url : str
        The bot's ``ws://`` or ``wss://`` URL.
    rate : int, optional
        The line rate to announce (the dialect's default when None; Twilio: 8000).
    connect_timeout : float
        Seconds to wait for the bot's WebSocket (default 10).
    headers : dict, optional
        Extra HTTP headers of the WebSocket upgrade (e.g. a bearer token).
    on_end : callable, optional
        Called with (call, stats) when a bridged call ends.
    """

    def __init__(
        self,
        protocol: str,
        url: str,
        *,
        rate: int | None = None,
        connect_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        on_end: Callable[[CallSurface, GatewayStats], None] | None = None,
    ) -> None:
        side = PROVIDERS.get(protocol)
        if side is None or side.raw_tcp:
            names = ", ".join(n for n, s in PROVIDERS.items() if not s.raw_tcp)
            raise ValueError(f"the gateway speaks a WebSocket dialect ({names}), got {protocol!r}")
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"the gateway's bot URL must be ws:// or wss://, got {url!r}")
        if rate is not None and rate not in side.rates:
            raise ValueError(f"{protocol} lines run at {side.rates}, got {rate}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0, got {connect_timeout}")
        self.protocol = protocol
        self.url = url
        self.rate = rate
        self.connect_timeout = connect_timeout
        self.headers = dict(headers or {})
        self.on_end = on_end
        self._side = side

    async def __call__(self, call: CallSurface) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
        from websockets.typing import Subprotocol

        stats = GatewayStats()
        side: ProviderSide = self._side(self.rate)
        try:
            try:
                ws = await asyncio.wait_for(
                    connect(
                        self.url,
                        subprotocols=[Subprotocol(p) for p in side.subprotocols] or None,
                        compression=None,
                        close_timeout=1.0,
                        additional_headers=self.headers,
                        open_timeout=None,
                    ),
                    self.connect_timeout,
                )
            except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI) as exc:
                stats.ended_by = "connect"
                log.warning(
                    "gateway: %s bot at %s not reached: %s: %s",
                    self.protocol,
                    self.url,
                    type(exc).__name__,
                    exc,
                )
                await call.close(1011, "the bot could not be reached")
                return
            async with ws:
                await _bridge(call, ws, side, stats, ConnectionClosed)
        finally:
            if self.on_end is not None:
                self.on_end(call, stats)


def gateway(protocol: str, url: str, **options: Any) -> Gateway:
    """A call handler that bridges each call to the bot at ``url`` speaking ``protocol``
    (see :class:`Gateway` for ``options``)."""
    return Gateway(protocol, url, **options)


async def _bridge(
    call: CallSurface, ws: Any, side: ProviderSide, stats: GatewayStats, closed: type[Exception]
) -> None:
    rate, frame = side.rate, side.frame
    pending: list[str] = []  # marks placed on the call, not played yet
    cleared: set[str] = set()  # marks a clear dropped, answered already

    async def send(message: str | bytes) -> None:
        with contextlib.suppress(closed):
            await ws.send(message)

    async def from_bot() -> None:
        try:
            async for message in ws:
                for event in side.parse(message):
                    if isinstance(event, PlayAudio):
                        stats.audio_received_s += len(event.pcm) / rate
                        call.play(event.pcm, rate)
                    elif isinstance(event, PlayMark):
                        stats.marks += 1
                        pending.append(event.name)
                        call.mark(event.name)
                    elif isinstance(event, ClearAudio):
                        stats.clears += 1
                        dropped, pending[:] = list(pending), []
                        cleared.update(dropped)
                        call.clear()
                        for reply in side.cleared(dropped):
                            await send(reply)
                    elif isinstance(event, Unexpected):
                        stats.unexpected.append(event.reason)
        except closed:
            pass

    async def to_bot() -> None:
        resampler: Resampler[np.int16] | None = None
        held = np.zeros(0, np.int16)
        async for event in call:
            if isinstance(event, Audio):
                if event.sample_rate != rate:
                    if resampler is None:
                        resampler = Resampler(event.sample_rate, rate)
                    pcm = resampler.process(event.pcm)
                else:
                    pcm = event.pcm
                held = np.concatenate([held, pcm]) if len(held) else pcm
                while len(held) >= frame:
                    chunk, held = held[:frame], held[frame:]
                    await send(side.audio(np.ascontiguousarray(chunk)))
                    stats.frames_sent += 1
            elif isinstance(event, MarkPlayed):
                if event.name in cleared:
                    cleared.discard(event.name)
                elif not event.cleared and event.name in pending:
                    pending.remove(event.name)
                    stats.marks_echoed += 1
                    for reply in side.mark_played(event.name):
                        await send(reply)
            elif isinstance(event, Dtmf):
                message = side.dtmf(event.digit, event.duration_ms or 100)
                if message is None:
                    stats.dtmf_dropped += 1
                else:
                    stats.dtmf += 1
                    await send(message)
            elif isinstance(event, Stopped):
                break

    for message in side.opening():
        await send(message)
    bot = asyncio.ensure_future(from_bot())
    caller = asyncio.ensure_future(to_bot())
    try:
        done, _ = await asyncio.wait({bot, caller}, return_when=asyncio.FIRST_COMPLETED)
        if caller in done:
            stats.ended_by = "caller"
            for message in side.closing():
                await send(message)
            await ws.close()
        else:
            stats.ended_by = "bot"
            await call.close(1000, "the bot ended the call")
        for task in done:
            task.result()  # an error on either path is the call's error
    finally:
        for task in (bot, caller):
            task.cancel()
        await asyncio.gather(bot, caller, return_exceptions=True)
