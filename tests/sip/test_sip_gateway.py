"""Gateway mode: a SIP call bridged to a bot written for a WebSocket media stream.

The bot is voxwire's own echo agent served as a Twilio Media Streams endpoint; the
gateway plays Twilio's side towards it. A caller dials the SIP server over UDP, speaks,
and hears its words back through the bot, with the bot's mark echoed; the caller's BYE
closes the bot's WebSocket; a bot that cannot be reached ends the call with a BYE.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.sip.audio_match import windowed_correlation
from tests.sip.test_sip_driver import HOST, dial, open_peer, talk
from tests.sip.uac import Caller
from voxwire.agents.gateway import Gateway, GatewayStats, gateway
from voxwire.aio.sip import SipCall, serve_sip
from voxwire.aio.surface import CallSurface
from voxwire.g711 import decode_ulaw
from voxwire.protocols.events import Dtmf
from voxwire.protocols.registry import CODECS
from voxwire.rtp import parse_rtp
from voxwire.sim.providers import PROVIDERS

pytest.importorskip("websockets", reason="the bot is a WebSocket server")
pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")


def heard_pcm(packets: list[bytes]) -> np.ndarray:
    payloads = b"".join(bytes(parse_rtp(p).payload) for p in packets)
    return np.frombuffer(decode_ulaw(payloads), np.int16)


def test_a_sip_call_reaches_a_twilio_bot_through_the_gateway() -> None:
    from voxwire.agents.echo import EchoStats, echo_handler
    from voxwire.agents.server import agent_server
    from voxwire.sim import synthesize

    words = synthesize("Hello, gateway test.", 8000, seed=1)

    async def scenario() -> tuple[GatewayStats, EchoStats, np.ndarray, SipCall]:
        bot_ended: list[EchoStats] = []
        bridged: list[GatewayStats] = []
        calls: list[SipCall] = []

        async def bot(call: CallSurface) -> None:
            await echo_handler(call, rate=16000, on_end=lambda c, s: bot_ended.append(s))

        async with agent_server(bot, "twilio") as url:
            bridge = Gateway("twilio", url, on_end=lambda c, s: bridged.append(s))

            async def handler(call: SipCall) -> None:
                calls.append(call)
                await bridge(call)

            server = await serve_sip(handler, HOST, 0, idle_timeout=5.0)
            sip, media = await open_peer(True), await open_peer(False)
            caller = Caller()
            try:
                await dial(server, sip, caller, HOST, media.port)
                while not calls:
                    await asyncio.sleep(0.01)
                await talk(media, calls[0].endpoint.local_addr, words)
                assert sip.transport is not None
                await asyncio.sleep(1.5)  # the echo plays out, its mark comes back
                at = f"{HOST}:{sip.port}".encode()
                bye = caller.request("BYE", cseq=2).replace(b"192.0.2.9:5062", at)
                sip.transport.sendto(bye, server.local_addr)
                await sip.expect(200)
                for _ in range(200):
                    if bridged and bot_ended:
                        break
                    await asyncio.sleep(0.02)
            finally:
                await server.aclose()
                sip.close()
                media.close()
        return bridged[0], bot_ended[0], heard_pcm(media.rtp), calls[0]

    stats, echoed, heard, _ = asyncio.run(asyncio.wait_for(scenario(), 40))
    assert stats.ended_by == "caller"
    assert stats.frames_sent >= len(words) // 160  # every 20 ms of the caller reached the bot
    assert echoed.utterances == 1  # the bot heard one utterance ...
    assert stats.audio_received_s > 0.8 * len(words) / 8000  # ... and sent its echo back
    assert stats.marks == stats.marks_echoed == 1  # its mark came back once it had played
    assert stats.unexpected == []
    # the caller heard its own words come back, through two G.711 legs and the bot
    value, whole = windowed_correlation(words, heard, 8000)
    assert value > 0.9, (value, whole)


def test_a_bot_that_cannot_be_reached_ends_the_call() -> None:
    async def scenario() -> tuple[GatewayStats, SipCall]:
        bridged: list[GatewayStats] = []
        calls: list[SipCall] = []
        bridge = gateway("twilio", "ws://127.0.0.1:9/media", on_end=lambda c, s: bridged.append(s))

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await bridge(call)

        server = await serve_sip(handler, HOST, 0)
        sip, media = await open_peer(True), await open_peer(False)
        try:
            await dial(server, sip, Caller(), HOST, media.port)
            for _ in range(250):
                if bridged:
                    break
                await asyncio.sleep(0.02)
            bye = await asyncio.wait_for(sip.messages.get(), 5)  # the server hangs up
        finally:
            await server.aclose()
            sip.close()
            media.close()
        assert getattr(bye, "method", None) == "BYE", bye
        return bridged[0], calls[0]

    stats, _ = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert stats.ended_by == "connect"
    assert stats.frames_sent == 0


@pytest.mark.parametrize(
    ("protocol", "url", "message"),
    [
        ("audiosocket", "ws://x/", "WebSocket dialect"),
        ("nope", "ws://x/", "WebSocket dialect"),
        ("twilio", "http://x/", "ws:// or wss://"),
    ],
)
def test_the_gateway_refuses_what_it_cannot_bridge(protocol: str, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Gateway(protocol, url)
    with pytest.raises(ValueError, match="lines run at"):
        Gateway("twilio", "ws://x/", rate=16000)


@pytest.mark.parametrize("protocol", [n for n, s in PROVIDERS.items() if not s.raw_tcp])
def test_each_dialects_key_press_reaches_the_bot_as_its_codec_reads_it(protocol: str) -> None:
    side = PROVIDERS[protocol]()
    codec = CODECS[protocol]()
    for message in side.opening():
        codec.receive(message, 0.0)
    message = side.dtmf("7", 120)
    if message is None:
        assert protocol == "teler"  # the one dialect without a key-press message
        return
    events = [e for e in codec.receive(message, 0.1) if isinstance(e, Dtmf)]
    assert [e.digit for e in events] == ["7"]


def test_key_presses_go_to_the_bot_and_a_dialect_without_them_counts_them() -> None:
    from voxwire.agents.gateway import _bridge
    from voxwire.protocols.events import Audio, Stopped

    class Call:
        """A call whose caller says 100 ms, presses 5 and hangs up."""

        def __init__(self) -> None:
            self.events = [
                Audio(np.zeros(1600, np.int16), 16000, 8000),
                Dtmf("5", 80),
                Stopped(),
            ]

        def __aiter__(self) -> Call:
            return self

        async def __anext__(self) -> object:
            if not self.events:
                await asyncio.sleep(3600)
            return self.events.pop(0)

        async def close(self, code: int = 1000, reason: str = "") -> None:
            pass

    class Bot:
        """The bot's WebSocket: keeps what it is sent, sends nothing."""

        def __init__(self) -> None:
            self.sent: list[str | bytes] = []
            self.closed = asyncio.Event()

        async def send(self, message: str | bytes) -> None:
            self.sent.append(message)

        async def close(self) -> None:
            self.closed.set()

        def __aiter__(self) -> Bot:
            return self

        async def __anext__(self) -> str:
            await self.closed.wait()
            raise StopAsyncIteration

    from websockets.exceptions import ConnectionClosed

    for protocol in ("twilio", "teler"):
        stats, bot = GatewayStats(), Bot()
        side = PROVIDERS[protocol]()
        asyncio.run(_bridge(Call(), bot, side, stats, ConnectionClosed))  # type: ignore[arg-type]
        codec = CODECS[protocol]()
        events = [e for m in bot.sent for e in codec.receive(m, 0.0)]
        assert (
            4 <= stats.frames_sent <= 5
        )  # 100 ms at the provider's rate, less the resampler's delay
        assert stats.ended_by == "caller"
        if protocol == "twilio":
            assert (stats.dtmf, stats.dtmf_dropped) == (1, 0)
            assert [e.digit for e in events if isinstance(e, Dtmf)] == ["5"]
        else:
            assert (stats.dtmf, stats.dtmf_dropped) == (0, 1)
