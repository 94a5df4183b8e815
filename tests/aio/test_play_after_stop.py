"""Audio an agent plays after the provider stopped the stream (the handler still working
through the events queued before the stop) is dropped, not raised: under load the echo
agent answered a caller who had just hung up and its handler failed."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.aio.test_slow_peer import NeverReads
from voxwire.aio import Call, Limits
from voxwire.aio.pacer import Pacer
from voxwire.protocols.twilio import TwilioCodec
from voxwire.sim.providers import TwilioSide


def test_audio_played_after_the_provider_stopped_is_dropped() -> None:
    async def main() -> tuple[int, int]:
        codec = TwilioCodec()
        side = TwilioSide(strict=True)
        events = [e for m in side.opening() for e in codec.receive(m, 0.0)]
        call = Call(codec, NeverReads(), pacer=Pacer(), limits=Limits())
        call.core.route(events)  # the start: the paced stream exists
        frame = np.zeros(160, dtype=np.int16)
        call.play(frame)
        queued = call.queued_total
        for message in side.closing():
            codec.receive(message, 0.0)
        assert codec.stopped
        # the events queued before the stop still reach the handler, which may answer
        call.play(frame)
        return queued, call.queued_total

    queued, after = asyncio.run(main())
    assert queued == 160
    assert after == 160
