"""Outbound SIP calls over TCP and TLS (voxwire.aio.sip_uac with ``transport=``): a call
to voxwire's own SIP server over TLS with the certificate checked, a hop that refuses the
connection or the certificate failing the call at once (503, section 8.1.3.1), a BYE that
finds the callee's connection gone opening a new one, and ``voxwire dial`` over TLS."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.sip.test_sip_sipp import free_udp_port, run
from voxwire.aio.sip import SipCall, serve_sip
from voxwire.aio.sip_uac import OutboundCall, open_dialer
from voxwire.aio.tls import client_context, self_signed, server_context
from voxwire.protocols.events import CallStarted
from voxwire.sip.message import Request, Response, message_length, parse_message

HOST = "127.0.0.1"


async def _hang_up_after_start(call: OutboundCall) -> None:
    async for event in call:
        if isinstance(event, CallStarted):
            await asyncio.sleep(0.3)
            return


async def _callee(call: SipCall) -> None:
    async for _ in call:
        pass


invites: list[Request] = []


async def _recording_callee(call: SipCall) -> None:
    invites.append(call.incoming.request)
    await _callee(call)


def test_a_call_over_tls_to_a_server_with_the_trusted_certificate(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate

    async def scenario() -> None:
        invites.clear()
        server = await serve_sip(
            _recording_callee,
            HOST,
            0,
            tls=server_context(cert, key),
            tls_port=0,
            codecs=("pcmu",),
        )
        try:
            assert server.tls_addr is not None
            port = server.tls_addr[1]
            async with await open_dialer(
                HOST, transport="tls", ssl_context=client_context(cert)
            ) as dialer:
                result = await dialer.dial(
                    f"sips:bot@{HOST}:{port}", _hang_up_after_start, ring_timeout=10
                )
                assert result.outcome == "answered", result
                assert dialer.connect_errors == 0
                counters = dialer.client.counters
                assert counters["request_sent_BYE"] == 1
                assert counters["retransmitted_INVITE"] == 0  # a reliable transport
                for _ in range(100):  # the BYE's 200
                    if counters["received_200"] >= 2:
                        break
                    await asyncio.sleep(0.02)
                assert counters["received_200"] == 2
            assert server.sip_tls is not None
            tls = server.sip_tls.counters
            assert tls["request_INVITE"] == 1  # every request came over TLS
            assert tls["request_BYE"] == 1
            (invite,) = invites
            assert (invite.header("Contact") or "").startswith("<sips:voxwire@")  # §8.1.1.8
            assert invite.vias[0].transport == "TLS"
            assert server.sip.counters["request_INVITE"] == 0
        finally:
            await server.aclose()

    run(scenario())


def test_a_refused_connection_or_an_untrusted_certificate_fails_at_once(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with await open_dialer(HOST, transport="tcp") as dialer:
            began = loop.time()
            closed_port = free_udp_port()  # nothing listens on its TCP twin either
            result = await dialer.dial(f"sip:bot@{HOST}:{closed_port}", _never, ring_timeout=20)
            assert (result.outcome, result.status, result.reason) == (
                "failed",
                503,
                "transport error",
            )
            assert loop.time() - began < 5.0  # not Timer B (32 s) nor the ring timeout
            assert dialer.connect_errors == 1
            assert dialer.client.counters["transport_error_INVITE"] == 1
            assert dialer.client.calls == 0
        server = await serve_sip(_callee, HOST, 0, tls=server_context(cert, key), tls_port=0)
        try:
            assert server.tls_addr is not None
            async with await open_dialer(
                HOST, transport="tls", ssl_context=client_context(other)
            ) as dialer:
                result = await dialer.dial(
                    f"sips:bot@{HOST}:{server.tls_addr[1]}", _never, ring_timeout=20
                )
                assert (result.outcome, result.status) == ("failed", 503)
                assert dialer.connect_errors == 1
            assert server.calls_finished == 0
        finally:
            await server.aclose()

    run(scenario())


async def _never(call: OutboundCall) -> None:
    raise AssertionError("no call should be answered")


class OneShotCallee:
    """A callee over TCP that answers the INVITE with a 200, takes the ACK and closes
    the connection; the BYE must come on a new one, which it answers 200."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[Request] = []
        self.bye = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buffer += chunk
                while (length := message_length(buffer)) is not None:
                    message = parse_message(bytes(buffer[:length]))
                    del buffer[:length]
                    assert isinstance(message, Request)
                    self.requests.append(message)
                    if message.method == "INVITE":
                        writer.write(self._ok(message, sdp=True))
                    elif message.method == "ACK":
                        return  # the callee's side of the connection goes away
                    elif message.method == "BYE":
                        writer.write(self._ok(message, sdp=False))
                        await writer.drain()
                        self.bye.set()
        finally:
            writer.close()

    @staticmethod
    def _ok(request: Request, *, sdp: bool) -> bytes:
        names = ("Via", "From", "Call-ID", "CSeq")
        headers = [(n, v) for n, v in request.headers if n in names]
        to = request.header("To") or ""
        headers.append(("To", to if ";tag=" in to else to + ";tag=callee"))
        headers.append(("Contact", f"<sip:callee@{HOST};transport=tcp>"))
        body = b""
        if sdp:
            body = (
                f"v=0\r\no=callee 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
                f"m=audio {free_udp_port()} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            ).encode()
            headers.append(("Content-Type", "application/sdp"))
        return Response(200, "OK", headers, body).encode()


def test_a_bye_after_the_callee_closed_the_connection_goes_on_a_new_one() -> None:
    async def scenario() -> None:
        callee = OneShotCallee()
        port = await callee.start()
        try:
            async with await open_dialer(HOST, transport="tcp") as dialer:
                result = await dialer.dial(
                    f"sip:callee@{HOST}:{port};transport=tcp", _hang_up_after_start
                )
                assert result.outcome == "answered", result
                await asyncio.wait_for(callee.bye.wait(), 5.0)
                for _ in range(100):
                    if dialer.client.counters["received_200"] >= 2:
                        break
                    await asyncio.sleep(0.02)
        finally:
            assert callee.server is not None
            callee.server.close()
        assert [r.method for r in callee.requests] == ["INVITE", "ACK", "BYE"]
        assert callee.connections == 2
        invite = callee.requests[0]
        assert invite.vias[0].transport == "TCP"
        assert ";transport=tcp" in (invite.header("Contact") or "")
        assert dialer.client.counters["received_200"] == 2  # the BYE's 200 came back

    run(scenario())


@pytest.mark.parametrize("srtp", [False, True])
def test_voxwire_dial_over_tls_with_tls_ca(certificate: tuple[Path, Path], srtp: bool) -> None:
    if srtp:
        pytest.importorskip("pylibsrtp", reason="SRTP needs pip install 'voxwire[sip-srtp]'")
    cert, key = certificate

    async def scenario() -> tuple[int, bytes]:
        server = await serve_sip(_callee, HOST, 0, tls=server_context(cert, key), tls_port=0)
        try:
            assert server.tls_addr is not None
            env = {k: v for k, v in os.environ.items() if k != "VOXWIRE_SIP_PASSWORD"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "voxwire",
                "dial",
                f"sips:bot@{HOST}:{server.tls_addr[1]}",
                "--tls-ca",
                str(cert),
                *(["--srtp"] if srtp else []),
                "--max-duration",
                "1",
                "--json",
                "-q",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 25.0)
            assert proc.returncode is not None
            assert server.sip_tls is not None
            assert server.sip_tls.counters["request_INVITE"] == 1
            return proc.returncode, out
        finally:
            await server.aclose()

    code, out = run(scenario())
    assert code == 0, out.decode(errors="replace")
    assert b'"outcome": "answered"' in out


def test_an_srtp_call_over_tls_carries_audio_both_ways_encrypted(
    certificate: tuple[Path, Path],
) -> None:
    pytest.importorskip("pylibsrtp", reason="SRTP needs pip install 'voxwire[sip-srtp]'")
    from tests.sip.audio_match import windowed_correlation
    from tests.sip.test_sip_uac_sipp import play_and_listen, tone

    cert, key = certificate
    said = tone(2.0)
    at_dialer: list[np.ndarray] = []
    at_server: list[np.ndarray] = []
    answered: list[SipCall] = []

    async def talker(call: SipCall) -> None:  # the callee says ``said`` and keeps what it hears
        answered.append(call)
        await play_and_listen(call, at_server, said)  # type: ignore[arg-type]

    async def scenario() -> OutboundCall:
        server = await serve_sip(
            talker,
            HOST,
            0,
            tls=server_context(cert, key),
            tls_port=0,
            codecs=("pcmu",),
            pipeline_rate=16000,
        )
        try:
            assert server.tls_addr is not None
            async with await open_dialer(
                HOST, transport="tls", ssl_context=client_context(cert), srtp=True
            ) as dialer:

                async def handler(call: OutboundCall) -> None:
                    await play_and_listen(call, at_dialer, said)

                result = await dialer.dial(f"sips:bot@{HOST}:{server.tls_addr[1]}", handler)
                assert result.outcome == "answered", result
                assert result.call is not None
                assert server.sip_tls is not None
                assert server.sip_tls.counters["request_INVITE"] == 1
                return result.call
        finally:
            await server.aclose()

    call = run(scenario())
    (callee,) = answered
    for side in (call, callee):
        assert side.srtp is not None
        assert side.srtp.suite == "AES_CM_128_HMAC_SHA1_80"
        assert side.srtp.protected >= 90  # the 2 s each side said, 20 ms a packet
        assert side.srtp.unprotected >= 90  # and what the other said, decrypted
        assert sum(side.srtp.dropped.values()) == 0
    for heard in (at_dialer, at_server):
        # the callee's recording starts with the first packet it played, which may be the
        # second one sent: 0.2 s of silence ahead keeps the lag positive
        back = np.concatenate([np.zeros(3200, np.int16), *heard])
        value, whole = windowed_correlation(said, back, 16000)
        print(f"over SRTP: windows {value:.3f}, whole {whole:.3f}")
        assert value > 0.8, value


def test_srtp_needs_tls_and_an_answer_without_keys_is_refused(
    certificate: tuple[Path, Path],
) -> None:
    pytest.importorskip("pylibsrtp", reason="SRTP needs pip install 'voxwire[sip-srtp]'")
    cert, key = certificate

    async def scenario() -> None:
        with pytest.raises(ValueError, match="srtp needs transport='tls'"):
            await open_dialer(HOST, transport="tcp", srtp=True)
        # a server that does not take SRTP (srtp="never") refuses the SAVP offer: 488
        server = await serve_sip(
            _callee, HOST, 0, tls=server_context(cert, key), tls_port=0, srtp="never"
        )
        try:
            assert server.tls_addr is not None
            async with await open_dialer(
                HOST, transport="tls", ssl_context=client_context(cert), srtp=True
            ) as dialer:
                result = await dialer.dial(f"sips:bot@{HOST}:{server.tls_addr[1]}", _never)
                assert (result.outcome, result.status) == ("failed", 488)
        finally:
            await server.aclose()

    run(scenario())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sip:a@127.0.0.1:9", "--srtp"], "--srtp needs --transport tls"),
        (["sip:a@127.0.0.1:9;transport=tcp", "--srtp"], "--srtp needs --transport tls"),
        (["sip:a@127.0.0.1:9", "--tls-ca", "ca.pem"], "--tls-ca is for --transport tls"),
        (["sips:a@127.0.0.1:9", "--tls-ca", "/no/such/ca.pem"], "--tls-ca: cannot load"),
    ],
)
def test_dial_refuses_transport_options_that_do_not_fit(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from voxwire.cli import main

    assert main(["dial", *args]) == 2
    assert message in capsys.readouterr().err


def test_the_transport_comes_from_the_uri_unless_given() -> None:
    from voxwire.cli_dial import _uri_transport

    assert _uri_transport("sips:bot@example.com") == "tls"
    assert _uri_transport("sip:bot@example.com;transport=TLS") == "tls"
    assert _uri_transport("sip:bot@example.com:5070;transport=tcp") == "tcp"
    assert _uri_transport("sip:bot@example.com;transport=udp") == "udp"
    assert _uri_transport("sip:bot@example.com") == "udp"
    assert _uri_transport("sip:bot@example.com?x=1;transport=tcp") == "udp"  # a header


def test_the_callees_bye_on_a_connection_of_its_own_to_the_contact_ends_the_call() -> None:
    """A callee that answers, takes the ACK, drops its connection and then hangs up by
    connecting to the Contact voxwire gave (RFC 3261 section 18: no connection reuse)."""

    async def scenario() -> tuple[OutboundCall, Response]:
        callee = OneShotCallee()
        port = await callee.start()
        stopped: list[str] = []

        async def handler(call: OutboundCall) -> None:
            stopped.extend([e.reason async for e in call if hasattr(e, "reason")])

        try:
            async with await open_dialer(HOST, transport="tcp") as dialer:
                dial = asyncio.ensure_future(
                    dialer.dial(f"sip:callee@{HOST}:{port};transport=tcp", handler)
                )
                for _ in range(250):
                    if [r.method for r in callee.requests] == ["INVITE", "ACK"]:
                        break
                    await asyncio.sleep(0.02)
                invite = callee.requests[0]
                contact = (invite.header("Contact") or "").strip("<>").split(";")[0]
                host, _, contact_port = contact.rpartition("@")[2].partition(":")
                assert (host, int(contact_port)) == dialer.local_addr
                reader, writer = await asyncio.open_connection(host, int(contact_port))
                bye = Request(
                    "BYE",
                    contact,
                    [
                        ("Via", f"SIP/2.0/TCP {HOST}:{port};branch=z9hG4bK-own-bye"),
                        ("Max-Forwards", "70"),
                        ("From", (invite.header("To") or "") + ";tag=callee"),
                        ("To", invite.header("From") or ""),
                        ("Call-ID", invite.call_id),
                        ("CSeq", "1 BYE"),
                    ],
                )
                writer.write(bye.encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
                writer.close()
                result = await asyncio.wait_for(dial, 10.0)
        finally:
            assert callee.server is not None
            callee.server.close()
        assert result.call is not None
        assert stopped == ["remote hung up"]
        response = parse_message(head)
        assert isinstance(response, Response)
        return result.call, response

    call, response = run(scenario())
    assert response.status == 200  # on the connection the BYE came on
    assert call.ended_by_remote


def test_a_callee_whose_stream_cannot_be_framed_fails_the_call_at_once() -> None:
    async def scenario() -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"SIP/2.0 100 Trying\r\nContent-Length: many\r\n\r\n")
            await reader.read()  # until voxwire closes it
            writer.close()

        server = await asyncio.start_server(garbage, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        try:
            async with await open_dialer(HOST, transport="tcp") as dialer:
                began = loop.time()
                result = await dialer.dial(f"sip:bot@{HOST}:{port}", _never, ring_timeout=20)
                assert (result.outcome, result.status) == ("failed", 503)
                assert loop.time() - began < 5.0
                assert dialer.stream_errors == {"bad_content_length": 1}
        finally:
            server.close()

    run(scenario())
