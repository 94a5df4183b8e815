"""A peer that stops reading cannot make a call's outbound queue grow without bound."""

from __future__ import annotations

import asyncio

import numpy as np
from peers import TwilioPeer

from voxwire.aio import CLOSE_SLOW_PEER, Call, Limits
from voxwire.aio.pacer import Pacer
from voxwire.protocols.twilio import TwilioCodec


class NeverReads:
    """A transport whose peer has stopped reading: every send waits forever."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    async def recv(self) -> str | bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(self, message: str | bytes) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_outbound_queue_is_bounded_and_the_call_closes() -> None:
    async def main() -> Call:
        codec = TwilioCodec()
        for message in TwilioPeer().opening():
            codec.receive(message, 0.0)
        call = Call(codec, NeverReads(), pacer=Pacer(), limits=Limits(max_pending_out=5))
        frame = np.zeros(160, dtype=np.int16)
        for _ in range(5):
            call._sink(frame)  # what the pacer does every 20 ms
        assert call.close_code is None
        call._sink(frame)
        return call

    call = asyncio.run(main())
    assert call.close_code == CLOSE_SLOW_PEER
    assert "peer not reading: 5 messages pending (max_pending_out=5)" in call.close_reason
    assert call._out.qsize() == 6  # the five messages and the end marker; nothing more
