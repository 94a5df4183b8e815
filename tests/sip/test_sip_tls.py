"""SIP over TLS (RFC 3261 section 26): serve_sip with a certificate the test makes
(voxwire.aio.tls.self_signed), a caller scripted here over Python's ssl that verifies it,
and baresip calling over TLS and recording what it heard; ``voxwire serve`` with
``--tls-cert/--tls-key``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import shutil
import ssl
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.sip.audio_match import windowed_correlation
from tests.sip.test_sip_sipp import _voxwire
from tests.sip.uac import Caller
from voxwire.agents.echo import echo_handler
from voxwire.aio.sip import SipCall, SipCallServer, serve_sip
from voxwire.aio.tls import client_context, self_signed, server_context
from voxwire.resample import Resampler
from voxwire.sip.message import Request, Response, parse_message

HOST = "127.0.0.1"
BARESIP = shutil.which("baresip")


def tls_request(
    caller: Caller, method: str, port: int, *, scheme: str = "sips", body: bytes = b"", **kw: object
) -> bytes:
    wire = caller.request(method, body=body, **kw)  # type: ignore[arg-type]
    return (
        wire.replace(b"SIP/2.0/UDP 192.0.2.9:5062", f"SIP/2.0/TLS {HOST}:{port}".encode())
        .replace(b"sip:bot@192.0.2.1", f"{scheme}:bot@{HOST}".encode(), 1)
        .replace(b"192.0.2.9", HOST.encode())
    )


async def read_message(reader: asyncio.StreamReader) -> Request | Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"content-length", b"l"):
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), 5)
    return parse_message(head + body)


async def expect(reader: asyncio.StreamReader, status: int) -> Response:
    while True:
        message = await read_message(reader)
        if isinstance(message, Response) and message.status >= 200:
            assert message.status == status, message.status
            return message


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):  # the server closed first
        await writer.wait_closed()


def offer(port: int) -> bytes:
    return (
        f"v=0\r\no=caller 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=ptime:20\r\n"
    ).encode()


def test_a_sips_call_over_tls_with_the_users_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate

    async def scenario() -> None:
        server = await serve_sip(
            functools.partial(echo_handler, rate=16000),
            HOST,
            0,
            tls=server_context(cert, key),
            tls_port=0,
        )
        try:
            assert server.tls_addr is not None
            # a client that trusts another CA refuses the handshake: it is our certificate
            other = Path(cert).parent / "other"
            other.mkdir()
            other_cert, _ = self_signed(other)
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    *server.tls_addr, ssl=client_context(other_cert), server_hostname=HOST
                )
            reader, writer = await asyncio.open_connection(
                *server.tls_addr, ssl=client_context(cert), server_hostname=HOST
            )
            assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            port = int(writer.get_extra_info("sockname")[1])
            caller = Caller(call_id="tls-1")
            writer.write(tls_request(caller, "INVITE", port, body=offer(40000)))
            ok = await expect(reader, 200)
            assert ok.vias[0].transport == "TLS"
            assert ok.header("Contact") == f"<sips:{HOST}:{server.tls_addr[1]}>"  # s. 12.1.1
            caller.to_tag = ok.to.tag
            writer.write(tls_request(caller, "ACK", port, cseq=1))
            # a sip: URI over TLS gets ;transport=tls in the Contact
            plain = Caller(call_id="tls-2")
            writer.write(tls_request(plain, "OPTIONS", port, scheme="sip"))
            assert (await expect(reader, 200)).status == 200
            # the bot hangs up: its BYE comes on this connection, with a TLS Via
            await server.aclose()
            bye = await read_message(reader)
            assert isinstance(bye, Request)
            assert bye.method == "BYE"
            assert bye.vias[0].transport == "TLS"
            assert bye.uri.startswith(f"sip:alice@{HOST}")  # the caller's Contact
            await close(writer)
            c = server.sip_tls.counters if server.sip_tls is not None else {}
            assert c["request_INVITE"] == 1
            assert c["request_ACK"] == 1
            assert server.sip.counters["request_INVITE"] == 0  # nothing came over UDP
        finally:
            await server.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_sips_uri_over_udp_or_tcp_gets_416(certificate: tuple[Path, Path]) -> None:
    async def scenario() -> None:
        server = await serve_sip(functools.partial(echo_handler, rate=16000), HOST, 0, tcp=True)
        try:
            reader, writer = await asyncio.open_connection(*server.local_addr)
            port = int(writer.get_extra_info("sockname")[1])
            wire = tls_request(Caller(call_id="s"), "INVITE", port, body=offer(40000))
            writer.write(wire.replace(b"SIP/2.0/TLS", b"SIP/2.0/TCP"))
            refused = await expect(reader, 416)
            assert refused.reason == "Unsupported URI Scheme"
            await close(writer)
            assert server.sip_tcp is not None
            assert server.sip_tcp.counters["sips_without_tls"] == 1
            assert server.calls == 0
        finally:
            await server.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_a_peer_that_speaks_no_tls_is_dropped(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate

    async def scenario() -> SipCallServer:
        server = await serve_sip(
            functools.partial(echo_handler, rate=16000),
            HOST,
            0,
            tls=server_context(cert, key),
            tls_port=0,
        )
        try:
            assert server.tls_addr is not None
            reader, writer = await asyncio.open_connection(*server.tls_addr)  # no TLS
            port = int(writer.get_extra_info("sockname")[1])
            writer.write(tls_request(Caller(), "OPTIONS", port))
            assert await asyncio.wait_for(reader.read(65536), 15) == b""  # closed, no answer
            await close(writer)
            # the listener still takes real TLS clients
            reader, writer = await asyncio.open_connection(
                *server.tls_addr, ssl=client_context(cert), server_hostname=HOST
            )
            writer.write(tls_request(Caller(call_id="after"), "OPTIONS", port))
            assert (await expect(reader, 200)).status == 200
            await close(writer)
        finally:
            await server.aclose()
        return server

    server = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert server.sip_tls is not None
    assert server.sip_tls.counters["request_OPTIONS"] == 1


def _baresip_config(directory: Path, cafile: Path, menc: str = "") -> None:
    (directory / "dump").mkdir()
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen {HOST}:0",
                f"sip_cafile {cafile}",
                "audio_player alsa,null",
                f"audio_source aufile,{directory / 'in.wav'}",
                "audio_alert aufile,/dev/null",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module alsa.so",
                "module sndfile.so",
                *(["module srtp.so"] if menc else []),
                "module_app account.so",
                "module_app menu.so",
                f"snd_path {directory / 'dump'}",
                "",
            ]
        )
    )
    (directory / "accounts").write_text(
        f"<sip:caller@{HOST};transport=tls>;regint=0;audio_codecs=PCMU"
        + (f";mediaenc={menc}" if menc else "")
        + "\n"
    )


@pytest.mark.skipif(BARESIP is None, reason="needs baresip (apt-get install baresip)")
@pytest.mark.parametrize("menc", ["", "srtp-mand"], ids=["rtp", "srtp"])
def test_baresip_calls_over_tls_and_hears_its_words_echoed(
    tmp_path: Path, certificate: tuple[Path, Path], menc: str
) -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    if menc:
        pytest.importorskip("pylibsrtp", reason="SRTP needs pip install 'voxwire[sip-srtp]'")
        if not Path("/usr/lib/baresip/modules/srtp.so").exists():
            pytest.skip("baresip's srtp module is missing (apt-get install baresip)")
    from voxwire.sim import synthesize

    cert, key = certificate
    words = synthesize("Hello, echo test.", 8000, seed=1)
    line = np.concatenate([np.zeros(1600, np.int16), words, np.zeros(3 * 8000, np.int16)])
    with wave.open(str(tmp_path / "in.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(line.tobytes())
    _baresip_config(tmp_path, cert, menc)

    async def scenario() -> tuple[int, str, list[SipCall], SipCallServer]:
        calls: list[SipCall] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await echo_handler(call, rate=16000)

        server = await serve_sip(
            handler, HOST, 0, tls=server_context(cert, key), tls_port=0, codecs=("pcmu",)
        )
        assert BARESIP is not None
        assert server.tls_addr is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                BARESIP,
                "-n",
                HOST,
                "-f",
                str(tmp_path),
                "-e",
                f"/dial sip:bot@{HOST}:{server.tls_addr[1]};transport=tls",
                "-t",
                "8",
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 20)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            for _ in range(100):
                if server.calls_finished:
                    break
                await asyncio.sleep(0.02)
        finally:
            await server.aclose()
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), calls, server

    returncode, output, calls, server = asyncio.run(asyncio.wait_for(scenario(), 40))
    assert returncode == 0, output[-2000:]
    assert "Call established" in output, output[-3000:]
    assert server.sip_tls is not None
    c = server.sip_tls.counters
    assert c["request_INVITE"] == c["request_ACK"] == c["request_BYE"] == 1
    assert server.sip.counters["request_INVITE"] == 0
    (call,) = calls
    assert call.ended_by_remote
    if menc:
        # RTP/SAVP answered with a=crypto; every packet each way went through SRTP
        assert call.answer.crypto is not None
        assert call.srtp is not None
        assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in output, output[-3000:]
        print(call.srtp)
        assert call.srtp.unprotected > 100
        assert call.srtp.protected > 40  # the echoed sentence: 73 packets in the runs here
        assert dict(call.srtp.dropped) == {}
        assert call.stats.rtp is not None
        assert call.stats.rtp.received == call.srtp.unprotected
        assert base64.b64encode(call.answer.crypto.local_key).decode() not in output
    else:
        assert call.srtp is None
    (decoded,) = (tmp_path / "dump").glob("*-dec.wav")
    with wave.open(str(decoded)) as f:
        heard = np.frombuffer(f.readframes(f.getnframes()), np.int16)
        rate = f.getframerate()
    reference = Resampler(8000, 16000).process(words)
    value, whole = windowed_correlation(reference, Resampler(rate, 16000).process(heard), 16000)
    print(f"baresip over TLS heard its words back: windows {value:.3f}, whole {whole:.3f}")
    assert value > 0.8, (value, whole)


def test_cli_serve_sip_over_tls_with_tls_cert_and_key(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server = _voxwire(
        "serve", "--protocol", "sip", "--echo", "--port", "0", "--sip-tls-port", "0",
        "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert ", tls " in line, line
        port = int(line.rstrip().rstrip(")").rsplit(" ", 1)[1])

        async def options() -> Response:
            reader, writer = await asyncio.open_connection(
                HOST, port, ssl=client_context(cert), server_hostname=HOST
            )
            local = int(writer.get_extra_info("sockname")[1])
            writer.write(tls_request(Caller(call_id="cli"), "OPTIONS", local))
            try:
                return await expect(reader, 200)
            finally:
                await close(writer)

        ok = asyncio.run(asyncio.wait_for(options(), 20))
        assert "INVITE" in (ok.header("Allow") or "")
        server.terminate()
        out, err = server.communicate(timeout=15)
        assert server.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    # a key that is not the certificate's: refused at start, status 2
    other = Path(cert).parent / "other"
    other.mkdir()
    _, other_key = self_signed(other)
    bad = _voxwire(
        "serve", "--protocol", "sip", "--echo", "--port", "0",
        "--tls-cert", str(cert), "--tls-key", str(other_key),
    )  # fmt: skip
    out, err = bad.communicate(timeout=30)
    assert bad.returncode == 2, (out, err)
    assert "cannot load the TLS certificate and key" in err


@pytest.mark.parametrize(("policy", "status"), [("tls", 488), ("always", 200)])
def test_cli_serve_sip_takes_srtp_over_udp_only_when_told(policy: str, status: int) -> None:
    pytest.importorskip("pylibsrtp", reason="SRTP needs pip install 'voxwire[sip-srtp]'")
    server = _voxwire(
        "serve", "--protocol", "sip", "--echo", "--port", "0", "--sip-srtp", policy,
        "--drain-timeout", "1",
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        port = int(line.split(" on sip:", 1)[1].split()[0].rsplit(":", 1)[1])
        key = base64.b64encode(bytes(range(30))).decode()
        body = (
            f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio 40000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
        ).encode()

        async def invite() -> Response:
            loop = asyncio.get_running_loop()
            got: asyncio.Queue[bytes] = asyncio.Queue()

            class Peer(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    got.put_nowait(data)

            transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=(HOST, 0))
            try:
                local = int(transport.get_extra_info("sockname")[1])
                wire = tls_request(Caller(call_id="savp"), "INVITE", local, scheme="sip", body=body)
                transport.sendto(wire.replace(b"SIP/2.0/TLS", b"SIP/2.0/UDP"), (HOST, port))
                while True:
                    message = parse_message(await asyncio.wait_for(got.get(), 10))
                    if isinstance(message, Response) and message.status >= 200:
                        return message
            finally:
                transport.close()

        final = asyncio.run(asyncio.wait_for(invite(), 20))
        assert final.status == status
        if status == 200:
            assert b"RTP/SAVP 0" in final.body
            assert b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in final.body
        server.terminate()
        out, err = server.communicate(timeout=15)
        assert key not in out + err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
