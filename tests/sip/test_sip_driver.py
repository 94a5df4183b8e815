"""serve_sip against a caller scripted here over loopback UDP: symmetric RTP (a caller whose
SDP names another address than the one it sends from), the inactivity timeout across a
hold, a stream moved by re-INVITE, and the server's shutdown."""

from __future__ import annotations

import asyncio
import functools

import numpy as np
import pytest

from tests.sip.uac import Caller
from voxwire.agents.echo import EchoStats, echo_handler
from voxwire.aio.rtp_call import CLOSE_GOING_AWAY
from voxwire.aio.session import CLOSE_IDLE
from voxwire.aio.sip import SipCall, SipCallServer, serve_sip
from voxwire.g711 import encode_ulaw
from voxwire.rtp import RtpSender
from voxwire.sip.message import Request, Response, parse_message

HOST = "127.0.0.1"
Address = tuple[str, int]


class Peer(asyncio.DatagramProtocol):
    """A UDP socket that keeps what it receives, parsed as SIP or as RTP."""

    def __init__(self, sip: bool) -> None:
        self.sip = sip
        self.messages: asyncio.Queue[Request | Response] = asyncio.Queue()
        self.rtp: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.sip:
            self.messages.put_nowait(parse_message(data))
        else:
            self.rtp.append(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    async def expect(self, status: int) -> Response:
        while True:
            message = await asyncio.wait_for(self.messages.get(), 5)
            if isinstance(message, Response) and message.status == status:
                return message


async def open_peer(sip: bool) -> Peer:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(lambda: Peer(sip), local_addr=(HOST, 0))
    peer.transport = transport
    return peer


def offer(host: str, port: int) -> bytes:
    return (
        f"v=0\r\no=caller 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=ptime:20\r\n"
    ).encode()


async def dial(
    server: SipCallServer, sip: Peer, caller: Caller, sdp_host: str, rtp_port: int
) -> None:
    assert sip.transport is not None
    wire = caller.request("INVITE", body=offer(sdp_host, rtp_port))
    wire = wire.replace(b"192.0.2.9:5062", f"{HOST}:{sip.port}".encode())
    sip.transport.sendto(wire, server.local_addr)
    ok = await sip.expect(200)
    caller.to_tag = ok.to.tag
    ack = caller.ack().replace(b"192.0.2.9:5062", f"{HOST}:{sip.port}".encode())
    sip.transport.sendto(ack, server.local_addr)


async def talk(media: Peer, to: Address, pcm: np.ndarray) -> None:
    """Send PCMU in real time, 20 ms a packet, then 1.5 s of silence."""
    assert media.transport is not None
    sender = RtpSender(0, ssrc=0x5EC0)
    frames = np.concatenate([pcm, np.zeros(12000 + (-len(pcm) % 160), np.int16)])
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(0, len(frames), 160):
        media.transport.sendto(sender.packet(encode_ulaw(frames[i : i + 160]).tobytes(), 160), to)
        await asyncio.sleep(max(0.0, start + (i // 160 + 1) * 0.02 - loop.time()))


@pytest.mark.parametrize("latch", [True, False])
def test_a_caller_whose_sdp_names_another_address_is_latched_onto(latch: bool) -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    from voxwire.sim import synthesize

    words = synthesize("Hello, echo test.", 8000, seed=1)

    async def scenario() -> tuple[SipCall, EchoStats | None, int]:
        calls: list[SipCall] = []
        ended: list[EchoStats] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await echo_handler(call, rate=16000, on_end=lambda c, s: ended.append(s))

        server = await serve_sip(handler, HOST, 0, latch=latch, idle_timeout=1.0)
        sip, media = await open_peer(True), await open_peer(False)
        try:
            # the offer names 127.0.0.2 (say, the caller's other interface); it sends from
            # 127.0.0.1, as a caller behind NAT sends from the NAT's address
            await dial(server, sip, Caller(), "127.0.0.2", media.port)
            while not calls:
                await asyncio.sleep(0.01)
            (call,) = calls
            await talk(media, call.endpoint.local_addr, words)
            for _ in range(150):
                if server.calls_finished:
                    break
                await asyncio.sleep(0.02)
        finally:
            await server.aclose()
            sip.close()
            media.close()
        return call, (ended[0] if ended else None), len(media.rtp)

    call, stats, echoed = asyncio.run(asyncio.wait_for(scenario(), 30))
    if latch:
        assert call.latched_to is not None
        assert call.latched_to[0] == HOST
        assert call.foreign_packets == 0
        assert stats is not None
        assert stats.utterances == 1
        assert echoed >= len(words) // 160  # the echo came back to where the caller sends from
        assert call.close_code is not None
    else:
        assert call.latched_to is None
        assert call.foreign_packets >= 40  # dropped until the call ended
        assert stats is not None
        assert stats.utterances == 0  # nothing heard: the call ended idle, with a BYE
        assert call.close_code == CLOSE_IDLE
        assert echoed == 0


def test_closing_the_server_ends_each_call_with_a_bye() -> None:
    async def scenario() -> tuple[SipCall, Request, int]:
        calls: list[SipCall] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await functools.partial(echo_handler, rate=16000)(call)

        server = await serve_sip(handler, HOST, 0)
        sip, media = await open_peer(True), await open_peer(False)
        await dial(server, sip, Caller(), HOST, media.port)
        while not calls:
            await asyncio.sleep(0.01)
        await server.aclose()
        try:
            while True:
                message = await asyncio.wait_for(sip.messages.get(), 5)
                if isinstance(message, Request):
                    return calls[0], message, server.calls
        finally:
            sip.close()
            media.close()

    call, bye, running = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert bye.method == "BYE"
    assert call.close_code == CLOSE_GOING_AWAY
    assert running == 0


def test_tcp_framing_splits_and_joins_messages_and_closes_a_broken_stream() -> None:
    async def scenario() -> tuple[list[int], bytes, dict[str, int]]:
        server = await serve_sip(functools.partial(echo_handler, rate=16000), HOST, 0, tcp=True)
        try:
            reader, writer = await asyncio.open_connection(*server.local_addr)
            port = writer.get_extra_info("sockname")[1]
            options = [
                Caller(call_id=f"o{i}")
                .request("OPTIONS")
                .replace(b"SIP/2.0/UDP 192.0.2.9:5062", f"SIP/2.0/TCP {HOST}:{port}".encode())
                for i in range(3)
            ]
            # two messages in one write, the third cut in two writes, keep-alive CRLFs
            writer.write(options[0] + b"\r\n\r\n" + options[1] + options[2][:30])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(options[2][30:])
            await writer.drain()
            statuses: list[int] = []
            buffer = b""
            while len(statuses) < 3:
                buffer += await asyncio.wait_for(reader.read(65536), 5)
                while b"\r\n\r\n" in buffer:
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    statuses.append(int(head.split(b" ", 2)[1]))
            # a message without Content-Length cannot be framed: the connection is closed
            writer.write(options[0].replace(b"Content-Length: 0\r\n", b""))
            await writer.drain()
            rest = await asyncio.wait_for(reader.read(65536), 5)
            writer.close()
            return statuses, rest, dict(server.stream_errors)
        finally:
            await server.aclose()

    statuses, rest, errors = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert statuses == [200, 200, 200]
    assert rest == b""  # closed
    assert errors == {"bad_content_length": 1}


def test_serve_sip_takes_the_same_service_options(capsys: pytest.CaptureFixture[str]) -> None:
    from voxwire.cli import main

    sip = ["serve", "--protocol", "sip", "--port", "0"]
    assert main([*sip, "--agent", "demo", "--llm", "gpt"]) == 2
    assert "--llm: unknown service 'gpt'" in capsys.readouterr().err
    assert main([*sip, "--echo", "--llm", "rules"]) == 2
    assert "need --agent" in capsys.readouterr().err
    agent = "voxwire.agents.echo:echo_handler"
    assert main([*sip, "--agent", agent, "--llm", "rules"]) == 2
    assert "takes no services= argument" in capsys.readouterr().err
    assert main([*sip, "--echo", "--token", "not-a-real-token"]) == 2
    assert "SIP carries no token" in capsys.readouterr().err


def test_no_rtp_is_due_while_held_inactive_and_a_moved_stream_is_followed() -> None:
    async def scenario() -> tuple[SipCall, bool, float, int]:
        calls: list[SipCall] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await echo_handler(call, rate=16000)

        server = await serve_sip(handler, HOST, 0, idle_timeout=0.6)
        sip, media, moved = await open_peer(True), await open_peer(False), await open_peer(False)
        loop = asyncio.get_running_loop()
        assert sip.transport is not None

        def reinvite(cseq: int, body: bytes) -> None:
            assert sip.transport is not None
            wire = caller.request("INVITE", cseq=cseq, body=body)
            sip.transport.sendto(
                wire.replace(b"192.0.2.9:5062", f"{HOST}:{sip.port}".encode()), server.local_addr
            )

        def ack(cseq: int) -> None:
            assert sip.transport is not None
            wire = caller.request("ACK", cseq=cseq)
            sip.transport.sendto(
                wire.replace(b"192.0.2.9:5062", f"{HOST}:{sip.port}".encode()), server.local_addr
            )

        caller = Caller()
        try:
            await dial(server, sip, caller, HOST, media.port)
            while not calls:
                await asyncio.sleep(0.01)
            (call,) = calls
            await talk(media, call.endpoint.local_addr, np.zeros(800, np.int16))  # 1.6 s
            with pytest.raises(RuntimeError, match="telephone-event"):
                await call.send_dtmf("1")  # the offer had no telephone-event
            # inactive: the caller sends nothing and nothing is due for 1.5 s
            reinvite(2, offer(HOST, media.port).replace(b"a=ptime:20", b"a=ptime:20\r\na=inactive"))
            await sip.expect(200)
            ack(2)
            await asyncio.sleep(1.5)
            alive_while_held = call.close_code is None
            # resumed on another port: the inactivity timeout counts from the resumption
            reinvite(3, offer(HOST, moved.port))
            await sip.expect(200)
            ack(3)
            resumed = loop.time()
            call.play(np.full(1600, 3000, np.int16), 8000)  # 0.2 s to the new port
            for _ in range(150):
                if call.close_code is not None:
                    break
                await asyncio.sleep(0.02)
            ended = loop.time() - resumed
        finally:
            await server.aclose()
            sip.close()
            media.close()
            moved.close()
        return call, alive_while_held, ended, len(moved.rtp)

    call, alive_while_held, ended, to_moved = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert alive_while_held
    assert call.close_code == CLOSE_IDLE
    assert 0.5 <= ended < 1.5  # idle_timeout after the resumption, not after the hold
    assert call.updates == 2
    assert call.endpoint.remote_addr is not None
    assert to_moved >= 8  # the bot's audio went to the port the last offer named


def test_dial_names_itself_when_it_refuses_an_agent(capsys: pytest.CaptureFixture[str]) -> None:
    from voxwire.cli import main

    assert main(["dial", "sip:a@127.0.0.1:9", "--agent", "no.such.module:agent"]) == 2
    err = capsys.readouterr().err
    assert "voxwire dial: cannot load the agent" in err
    assert "voxwire serve" not in err


def test_a_caller_that_offers_red_has_its_lost_packets_rebuilt_from_the_copies() -> None:
    """An offer with ``red/8000`` (blocks of PCMU) is answered with it, and packets the
    network lost are rebuilt from the redundant copy in the next packet (RFC 2198)."""
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    from voxwire.rtp import RedBlock, build_red
    from voxwire.sim import synthesize

    words = synthesize("Hello, redundancy test.", 8000, seed=1)
    red_offer = (
        f"v=0\r\no=caller 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        "m=audio {port} RTP/AVP 0 99\r\na=rtpmap:99 red/8000\r\na=fmtp:99 0/0\r\n"
        "a=ptime:20\r\n"
    )

    async def scenario() -> tuple[SipCall, EchoStats, bytes]:
        calls: list[SipCall] = []
        ended: list[EchoStats] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await echo_handler(call, rate=16000, on_end=lambda c, s: ended.append(s))

        server = await serve_sip(handler, HOST, 0, idle_timeout=1.0)
        sip, media = await open_peer(True), await open_peer(False)
        caller = Caller()
        try:
            assert sip.transport is not None
            assert media.transport is not None
            body = red_offer.replace("{port}", str(media.port)).encode()
            at = f"{HOST}:{sip.port}".encode()
            invite = caller.request("INVITE", body=body).replace(b"192.0.2.9:5062", at)
            sip.transport.sendto(invite, server.local_addr)
            ok = await sip.expect(200)
            caller.to_tag = ok.to.tag
            sip.transport.sendto(caller.ack().replace(b"192.0.2.9:5062", at), server.local_addr)
            while not calls:
                await asyncio.sleep(0.01)
            to = calls[0].endpoint.local_addr
            sender = RtpSender(99, ssrc=0x5ED0)
            frames = np.concatenate([words, np.zeros(12000 + (-len(words) % 160), np.int16)])
            loop = asyncio.get_running_loop()
            start, previous = loop.time(), b""
            for k, i in enumerate(range(0, len(frames), 160)):
                primary = encode_ulaw(frames[i : i + 160]).tobytes()
                copies = [RedBlock(0, 160, previous)] if previous else []
                packet = sender.packet(build_red(RedBlock(0, 0, primary), copies), 160)
                previous = primary
                if k % 5 != 2:  # every fifth packet lost on the way
                    media.transport.sendto(packet, to)
                await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - loop.time()))
            for _ in range(150):
                if server.calls_finished:
                    break
                await asyncio.sleep(0.02)
        finally:
            await server.aclose()
            sip.close()
            media.close()
        return calls[0], ended[0], ok.body

    call, stats, answer = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert b"m=audio" in answer
    assert b" RTP/AVP 0 99" in answer
    assert b"a=rtpmap:99 red/8000\r\na=fmtp:99 0/0\r\n" in answer
    rtp = call.stats
    assert rtp.red_copies >= 0.8 * (len(words) // 160) / 5, rtp  # the lost ones, rebuilt
    assert stats.utterances == 1
