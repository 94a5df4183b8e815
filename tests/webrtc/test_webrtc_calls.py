"""WebRTC calls end to end over loopback: an aiortc peer plays the browser, against
voxwire's WHIP server and media path (ICE, DTLS and SRTP are real)."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from typing import Any

import numpy as np
import pytest

aiortc = pytest.importorskip("aiortc", reason="WebRTC needs the webrtc extra (aiortc)")
aiohttp = pytest.importorskip("aiohttp")
av = pytest.importorskip("av")
pytest.importorskip("opuslib", reason="voxwire's Opus path needs opuslib")
pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")

import aioice.ice  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from voxwire.agents.echo import echo_handler  # noqa: E402
from voxwire.aio.rtp_call import RtpCall  # noqa: E402
from voxwire.protocols.events import Audio, CallStarted, Dtmf  # noqa: E402
from voxwire.resample import Resampler  # noqa: E402
from voxwire.sim.caller import aligned_correlation  # noqa: E402
from voxwire.sim.speech import synthesize  # noqa: E402
from voxwire.webrtc import WebRtcPeer, WebRtcServer, check_aiortc  # noqa: E402
from voxwire.webrtc.sdp import parse_offer  # noqa: E402

RATE = 48000
FRAME = 960


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE candidates on 127.0.0.1 only, for both peers (aioice leaves loopback out)."""
    monkeypatch.setattr(
        aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
    )


class SignalTrack(MediaStreamTrack):
    """The browser's microphone: ``pcm`` (48 kHz mono) in 20 ms frames, in real time."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray) -> None:
        super().__init__()
        self.pcm = pcm
        self.pos = 0
        self.t0: float | None = None

    async def recv(self) -> Any:
        if self.t0 is None:
            self.t0 = time.monotonic()
        await asyncio.sleep(max(0.0, self.t0 + self.pos / RATE - time.monotonic()))
        chunk = self.pcm[self.pos : self.pos + FRAME]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.pos
        frame.time_base = fractions.Fraction(1, RATE)
        self.pos += FRAME
        return frame


class Browser:
    """An aiortc peer connection that sends ``pcm`` and records what it receives."""

    def __init__(self, pcm: np.ndarray) -> None:
        self.pc = RTCPeerConnection()
        self.pc.addTrack(SignalTrack(pcm))
        self.heard: list[np.ndarray] = []
        self._reader: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().reshape(-1)
            channels = len(frame.layout.channels)
            self.heard.append(samples[::channels].astype(np.int16))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def received(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, np.int16)

    async def close(self) -> None:
        await self.pc.close()


def to16k(pcm: np.ndarray) -> np.ndarray:
    r = Resampler(RATE, 16000)
    return np.concatenate([r.process(pcm), r.flush()])


# Synthesized at import, when the whole suite is collected: with another text here the
# demo test's caller, synthesized later in the same process, was misheard (espeak-ng
# keeps state from one synthesis to the next)
SAID = synthesize("Hello there, this is a test of the echo over web RTC.", RATE, seed=3)


def test_the_aiortc_internals_used_are_where_voxwire_expects_them() -> None:
    check_aiortc()  # fails loudly when an aiortc release moves them


async def loopback(call: RtpCall) -> None:
    """Play back each chunk of the caller's audio as it comes: voxwire's media path both
    ways (jitter buffer, Opus, pacing, the sender) with no agent between (no VAD that a
    late packet's gap could make end an utterance early)."""
    async for event in call:
        if isinstance(event, Audio):
            call.play(event.pcm, event.sample_rate)


async def _echo_call(server: WebRtcServer, url: str, seconds: float) -> tuple[Browser, Any]:
    pcm = np.concatenate([np.zeros(RATE // 2, np.int16), SAID, np.zeros(RATE * 20, np.int16)])
    browser = Browser(pcm)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "whip", data=await browser.offer(), headers={"Content-Type": "application/sdp"}
        ) as resp:
            assert resp.status == 201, await resp.text()
            location = resp.headers["Location"]
            answer = await resp.text()
        await browser.answer(answer)
        peer = server.peers[location.rsplit("/", 1)[1]]
        # wait (at most ``seconds``) until the browser has heard the lead, the words and
        # 0.6 s more: the loopback sends back everything, silence included
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        enough = RATE // 2 + len(SAID) + RATE * 6 // 10
        while sum(map(len, browser.heard)) < enough and loop.time() < deadline:
            await asyncio.sleep(0.05)
        async with http.delete(url.rstrip("/") + location) as resp:
            assert resp.status == 200
    await browser.close()
    return browser, peer


def segment_correlations(said: np.ndarray, heard: np.ndarray, parts: int = 4) -> list[float]:
    """Each of ``parts`` equal pieces of ``said`` aligned on its own within ``heard``: a
    gap the jitter buffer filled, or a stretch, moves the pieces after it apart, which
    lowers one whole-phrase correlation but not these."""
    padded = np.concatenate([heard, np.zeros(len(said), np.int16)])  # missing is silence
    size = len(said) // parts
    return [aligned_correlation(said[i * size : (i + 1) * size], padded)[0] for i in range(parts)]


def test_a_browser_call_is_echoed_through_voxwires_media_path() -> None:
    server = WebRtcServer(loopback)

    async def main() -> tuple[Browser, Any]:
        async with server.serve("127.0.0.1", 0) as url:
            got = await _echo_call(server, url, 20.0)
            for _ in range(100):
                if not server.peers:
                    break
                await asyncio.sleep(0.02)
            return got

    browser, peer = asyncio.run(asyncio.wait_for(main(), 40))
    assert server.answered == 1
    assert server.peers == {}  # the DELETE ended it
    # the answer asked the browser for in-band FEC, with the offer's payload type
    assert f"a=fmtp:{peer.offer.opus} minptime=10;useinbandfec=1" in peer.answer
    stats = peer.call.session.stats()
    assert stats.frames.get("normal", 0) > 100  # voxwire's jitter buffer played the stream
    # aiortc's sender puts the RFC 6464 level on every packet; the session reads it
    level_id = parse_offer(peer.answer).audio_level
    assert level_id is not None
    assert peer.call.session.audio_level_id == level_id
    assert stats.audio_levels > 100
    assert stats.extension_errors == 0
    assert peer._sender.sent > 50  # and voxwire's encoder sent the echo
    assert peer.call.codec.name == "webrtc"
    heard = browser.received()
    values = segment_correlations(to16k(SAID), to16k(heard))
    # each piece 0.8-0.9 on an idle machine; unrelated speech scores below 0.2
    assert float(np.median(values)) > 0.5, (values, len(heard), peer._sender.sent, stats)


def test_key_presses_reach_the_handler_as_dtmf_events() -> None:
    events: list[object] = []

    async def handler(call: RtpCall) -> None:
        async for event in call:
            events.append(event)
            if isinstance(event, Dtmf):
                return

    async def main() -> None:
        pcm = np.zeros(RATE * 3, np.int16)
        browser = Browser(pcm)
        offer = await browser.offer()
        offer = offer.replace(
            "a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/48000"
        ).replace("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 96 101", 1)
        peer = await WebRtcPeer.accept(offer)
        assert peer.offer.telephone_event == 101
        assert "a=rtpmap:101 telephone-event/48000" in peer.answer
        task = peer.start(handler)
        await browser.answer(peer.answer)
        for _ in range(200):
            if any(isinstance(e, CallStarted) for e in events):
                break
            await asyncio.sleep(0.02)
        dtls = peer.pc.getTransceivers()[0].receiver.transport
        ssrc = 0x1234
        for end, repeat in ((False, 1), (True, 3)):
            for _ in range(repeat):
                payload = bytes([7, 0x80 if end else 0]) + (4800).to_bytes(2, "big")
                header = bytes([0x80, 101, 0, 1]) + (96000).to_bytes(4, "big")
                await dtls._handle_rtp_data(header + ssrc.to_bytes(4, "big") + payload, 0)
        await asyncio.wait_for(task, 5)
        # counted in the stream's statistics, so their numbers do not read as loss
        counted.append(peer.call.endpoint.session.stats().telephone_events)
        await browser.close()

    counted: list[int] = []
    asyncio.run(asyncio.wait_for(main(), 30))
    assert [e for e in events if isinstance(e, Dtmf)] == [Dtmf("7", 100)]
    assert counted == [4]


def test_the_loss_the_browser_reports_adapts_voxwires_opus() -> None:
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    async def main() -> tuple[int, int, int, int]:
        browser = Browser(np.zeros(RATE * 3, np.int16))
        peer = await WebRtcPeer.accept(await browser.offer())
        peer.start(echo_handler)
        await browser.answer(peer.answer)
        for _ in range(200):
            if peer.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.02)
        encoder = peer.call.session.opus_encoder
        assert encoder is not None
        start = encoder.bitrate
        transceiver = peer.pc.getTransceivers()[0]
        ours = transceiver.sender._ssrc
        report = RtcpReceiverInfo(
            ssrc=ours,
            fraction_lost=38,
            packets_lost=30,
            highest_sequence=200,
            jitter=0,
            lsr=0,
            dlsr=0,
        )  # fraction lost 38/256: 15%
        rr = bytes(RtcpRrPacket(ssrc=0x4242, reports=[report]))
        await transceiver.receiver.transport._handle_rtcp_data(rr)
        got = (start, encoder.bitrate, encoder.packet_loss_percent, peer.reports)
        await browser.close()
        await peer.close()
        return got

    start, bitrate, percent, reports = asyncio.run(asyncio.wait_for(main(), 30))
    assert start == 24000  # a call starts lean; the browser's first reports say clean
    assert (bitrate, percent) == (40000, 20)
    assert reports >= 1


def test_voxwire_reports_the_loss_of_the_browser_s_stream_in_rtcp() -> None:
    # Every tenth packet of the browser's stream is dropped on the way in; voxwire's
    # receiver reports (aiortc's own receiver never sees the packets) tell the browser.
    async def main() -> tuple[list[Any], int]:
        browser = Browser(np.tile(SAID, 2))
        peer = await WebRtcPeer.accept(await browser.offer())
        endpoint = peer.call.endpoint
        received = endpoint.datagram_received
        count = itertools.count()

        def lossy(data: bytes, addr: Any) -> None:
            if next(count) % 10 != 9:
                received(data, addr)

        endpoint.datagram_received = lossy  # type: ignore[method-assign]
        peer.start(echo_handler)
        await browser.answer(peer.answer)
        sender = browser.pc.getTransceivers()[0].sender
        remote: list[Any] = []
        for _ in range(80):
            await asyncio.sleep(0.1)
            stats = await sender.getStats()
            remote = [r for r in stats.values() if r.type == "remote-inbound-rtp"]
            if remote and remote[0].packetsLost >= 5:
                break
        sent = peer.receiver_reports
        await browser.close()
        await peer.close()
        return remote, sent

    remote, sent = asyncio.run(asyncio.wait_for(main(), 30))
    assert sent >= 1
    assert len(remote) == 1
    assert remote[0].packetsLost >= 5
    assert 0.05 <= remote[0].fractionLost / 256 <= 0.15  # about one packet in ten (1/256s)


def test_bad_requests_are_refused_with_their_status_and_counted() -> None:
    server = WebRtcServer(echo_handler, max_sessions=1)
    server.auth = None

    async def main() -> dict[str, int]:
        statuses: dict[str, int] = {}
        async with server.serve("127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
            sdp = {"Content-Type": "application/sdp"}

            async def post(name: str, body: bytes | str, headers: dict[str, str]) -> None:
                async with http.post(url + "whip", data=body, headers=headers) as resp:
                    statuses[name] = resp.status

            await post("json", "{}", {"Content-Type": "application/json"})
            await post("huge", "v=0\r\n" + "a=x\r\n" * 20000, sdp)
            await post("garbage", "hello", sdp)
            await post("no_audio", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", sdp)
            async with http.options(url + "whip") as resp:
                statuses["options"] = resp.status
                assert resp.headers["Accept-Post"] == "application/sdp"
            async with http.delete(url + "whip/nope") as resp:
                statuses["unknown"] = resp.status
            async with http.patch(url + "whip/nope", data="x") as resp:
                statuses["trickle"] = resp.status
            async with http.get(url) as resp:
                statuses["page"] = resp.status
                assert "RTCPeerConnection" in await resp.text()
            # one call is allowed; the second is refused while the first is open
            first = Browser(np.zeros(RATE * 2, np.int16))
            await post("first", await first.offer(), sdp)
            second = Browser(np.zeros(RATE, np.int16))
            await post("second", await second.offer(), sdp)
            await first.close()
            await second.close()
            await server.aclose()
        return statuses

    statuses = asyncio.run(asyncio.wait_for(main(), 30))
    assert statuses == {
        "json": 415,
        "huge": 413,
        "garbage": 400,
        "no_audio": 400,
        "options": 204,
        "unknown": 404,
        "trickle": 405,
        "page": 200,
        "first": 201,
        "second": 503,
    }
    assert server.refused == {415: 1, 413: 1, 400: 2, 404: 1, 405: 1, 503: 1}


def test_a_token_is_required_when_set() -> None:
    from voxwire.security import TokenAuth

    server = WebRtcServer(echo_handler, auth=TokenAuth("test-token-123"))

    async def main() -> list[int]:
        out = []
        async with server.serve("127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
            browser = Browser(np.zeros(RATE, np.int16))
            offer = await browser.offer()
            for headers in (
                {"Content-Type": "application/sdp"},
                {"Content-Type": "application/sdp", "Authorization": "Bearer wrong"},
                {"Content-Type": "application/sdp", "Authorization": "Bearer test-token-123"},
            ):
                async with http.post(url + "whip", data=offer, headers=headers) as resp:
                    out.append(resp.status)
            await browser.close()
            await server.aclose()
        return out

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [401, 401, 201]


def test_signed_single_use_tokens_over_https(tmp_path: Any) -> None:
    from tests.aio.certs import self_signed
    from voxwire.aio.tls import client_context, server_context
    from voxwire.security import CallTokens, TokenAuth

    cert, key = self_signed(tmp_path)
    tokens = CallTokens({"k1": b"0123456789abcdef0123456789abcdef"})
    server = WebRtcServer(
        echo_handler, auth=TokenAuth(tokens=tokens), tls=server_context(cert, key)
    )
    token, other = tokens.mint("call-1", 60), tokens.mint("call-2", 60)

    async def main() -> tuple[str, list[int]]:
        out = []
        tls = client_context(cert)
        async with server.serve("127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
            browser = Browser(np.zeros(RATE * 3, np.int16))
            offer = await browser.offer()
            sdp = {"Content-Type": "application/sdp"}
            async with http.get(url, ssl=tls) as resp:
                out.append(resp.status)
            forged = url + "whip?token=vx1.k1.forged.mac"
            async with http.post(forged, data=offer, headers=sdp, ssl=tls) as resp:
                out.append(resp.status)
            signed = url + f"whip?token={token}"
            async with http.post(signed, data=offer, headers=sdp, ssl=tls) as resp:
                out.append(resp.status)
                location = resp.headers["Location"]
            peers = len(server.peers)
            # the token opened its call; replayed, it opens no other (401 before any peer)
            bearer = {**sdp, "Authorization": f"Bearer {token}"}
            async with http.post(url + "whip", data=offer, headers=bearer, ssl=tls) as resp:
                out.append(resp.status)
            out.append(len(server.peers) - peers)
            # only the token that opened the session ends it
            resource = url.rstrip("/") + location
            for shown in (other, token):
                headers = {"Authorization": f"Bearer {shown}"}
                async with http.delete(resource, headers=headers, ssl=tls) as resp:
                    out.append(resp.status)
            await browser.close()
            await server.aclose()
        return url, out

    url, statuses = asyncio.run(asyncio.wait_for(main(), 30))
    assert url.startswith("https://127.0.0.1:")
    assert statuses == [200, 401, 201, 401, 0, 401, 200]
    assert server.answered == 1
    assert server.refused == {401: 3}
    assert server.peers == {}


def test_voxwire_serve_webrtc_serves_the_page_and_stops_on_sigterm() -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "voxwire", "serve", "--protocol", "webrtc", "--echo"]
    with subprocess.Popen(
        [*command, "--port", "0", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "webrtc echo agent: open http://127.0.0.1:" in line, line
            url = line.split("open ")[1].split(" ")[0]
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert resp.status == 200
                assert b"RTCPeerConnection" in resp.read()
            request = urllib.request.Request(url + "whip", method="OPTIONS")
            with urllib.request.urlopen(request, timeout=5) as resp:
                assert resp.status == 204
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
            assert "stopped" in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()


def test_voxwire_serve_webrtc_over_https_with_signed_tokens(tmp_path: Any) -> None:
    import os
    import signal
    import ssl
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from tests.aio.certs import self_signed
    from voxwire.aio.tls import client_context

    cert, key = self_signed(tmp_path)
    keys = tmp_path / "keys"
    keys.write_text("k1:test-key-not-a-secret-0001\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VOXWIRE_TOKEN_KEY", None)
    command = [sys.executable, "-m", "voxwire", "serve", "--protocol", "webrtc", "--echo"]
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--key-file", str(keys)]
    alone = subprocess.run(
        [*command, "--tls-cert", str(cert)], capture_output=True, text=True, env=env, timeout=60
    )
    assert alone.returncode == 2
    assert "--tls-cert and --tls-key go together" in alone.stderr
    with subprocess.Popen(
        [*command, *tls, "--port", "0", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "webrtc echo agent: open https://127.0.0.1:" in line, line
            url = line.split("open ")[1].split(" ")[0]
            context: ssl.SSLContext = client_context(cert)
            with urllib.request.urlopen(url, timeout=5, context=context) as resp:
                assert resp.status == 200
            request = urllib.request.Request(
                url + "whip?token=vx1.k1.forged.mac",
                data=b"v=0\r\n",
                headers={"Content-Type": "application/sdp"},
                method="POST",
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5, context=context)
            refused.value.close()
            assert refused.value.code == 401
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_transcript_replays_to_late_pages_and_drops_for_slow_ones() -> None:
    from voxwire.webrtc.server import MAX_TURNS, Transcript

    async def main() -> tuple[list[int], list[int], int]:
        transcript = Transcript()
        transcript.add({"n": 0})
        early: list[int] = []

        async def read(into: list[int]) -> None:
            into.extend([turn["n"] async for turn in transcript.follow()])

        reader = asyncio.ensure_future(read(early))
        await asyncio.sleep(0)  # subscribed, nothing read yet
        for n in range(1, MAX_TURNS + 10):  # more than a slow reader's queue holds
            transcript.add({"n": n})
        transcript.end()
        await asyncio.wait_for(reader, 5)
        late: list[int] = []
        await asyncio.wait_for(read(late), 5)  # after the end: what was kept, then done
        return early, late, transcript.dropped

    early, late, dropped = asyncio.run(main())
    assert early[-1] == MAX_TURNS + 9
    assert len(early) == MAX_TURNS
    assert dropped == MAX_TURNS + 10 - len(early)
    assert late == list(range(10, MAX_TURNS + 10))


def test_the_raw_pcm_websocket_fallback_echoes_and_checks_the_token() -> None:
    import json

    from voxwire.security import TokenAuth

    server = WebRtcServer(echo_handler, auth=TokenAuth("test-token-123"), max_sessions=1)
    said = SAID[: RATE * 2]

    async def main() -> tuple[list[int], np.ndarray]:
        statuses = []
        heard: list[np.ndarray] = []
        async with server.serve("127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
            ws_url = url.replace("http", "ws", 1) + "ws"
            for query in ("", "?token=wrong"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(ws_url + query)
                statuses.append(refused.value.status)
            async with http.ws_connect(ws_url + "?token=test-token-123") as ws:
                # one call at a time: a second, on either transport, is refused
                with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                    await http.ws_connect(ws_url + "?token=test-token-123")
                statuses.append(full.value.status)
                await ws.send_str(json.dumps({"event": "start", "sampleRate": RATE}))
                pcm = np.concatenate([said, np.zeros(RATE * 3, np.int16)])
                t0 = time.monotonic()
                for i in range(0, len(pcm), FRAME):
                    await ws.send_bytes(pcm[i : i + FRAME].astype("<i2").tobytes())
                    await asyncio.sleep(max(0.0, t0 + (i + FRAME) / RATE - time.monotonic()))
                    while True:
                        try:
                            msg = await ws.receive(timeout=0.001)
                        except asyncio.TimeoutError:
                            break
                        if msg.type is aiohttp.WSMsgType.BINARY:
                            heard.append(np.frombuffer(msg.data, "<i2"))
                        elif msg.type is aiohttp.WSMsgType.TEXT:
                            event = json.loads(msg.data)
                            if event["event"] == "mark":  # played at once
                                await ws.send_str(msg.data)
                        else:
                            break
            for _ in range(100):
                if not server.websockets:
                    break
                await asyncio.sleep(0.05)
            await server.aclose()
        return statuses, np.concatenate(heard) if heard else np.zeros(0, np.int16)

    statuses, heard = asyncio.run(asyncio.wait_for(main(), 60))
    assert statuses == [401, 401, 503]
    assert server.refused == {401: 2, 503: 1}
    assert server.websockets == 0
    assert server.answered == 1
    value, _ = aligned_correlation(to16k(said), to16k(heard))
    assert value > 0.5, value  # the echo came back over the raw-PCM dialect


def offer_transport_cc(sdp: str, ext_id: int = 3) -> str:
    """``sdp`` (aiortc's offer) with transport-wide congestion control offered for audio
    as Chrome offers it: the header extension and ``transport-cc`` feedback for Opus."""
    from voxwire.twcc import TRANSPORT_CC_URI

    opus = parse_offer(sdp).opus
    lines = sdp.split("\r\n")
    at = lines.index(next(x for x in lines if x.startswith(f"a=rtpmap:{opus} ")))
    lines.insert(at + 1, f"a=rtcp-fb:{opus} transport-cc")
    last_ext = max(i for i, x in enumerate(lines) if x.startswith("a=extmap:"))
    lines.insert(last_ext + 1, f"a=extmap:{ext_id} {TRANSPORT_CC_URI}")
    return "\r\n".join(lines)


def _elements(data: bytes) -> dict[int, bytes]:
    """The RFC 8285 one-byte elements of an RTP packet's header extension."""
    from voxwire.rtp import parse_rtp

    ext = parse_rtp(data).extension
    assert ext is not None
    assert ext.profile == 0xBEDE
    out: dict[int, bytes] = {}
    i = 0
    while i < len(ext.data):
        if ext.data[i] == 0:
            i += 1
            continue
        ident, size = ext.data[i] >> 4, (ext.data[i] & 0x0F) + 1
        out[ident] = ext.data[i + 1 : i + 1 + size]
        i += 1 + size
    return out


@pytest.mark.parametrize("mode", ["offered", "not offered", "turned off"])
def test_transport_cc_numbers_every_packet_voxwire_sends_when_taken(mode: str) -> None:
    async def main() -> tuple[WebRtcPeer, list[bytes], tuple[int, int, int]]:
        browser = Browser(np.concatenate([SAID, np.zeros(RATE, np.int16)]))
        offer = await browser.offer()
        if mode != "not offered":
            offer = offer_transport_cc(offer)
        peer = await WebRtcPeer.accept(offer, transport_cc=mode != "turned off")
        # what reaches the browser: each packet as its DTLS transport unprotects it
        dtls = browser.pc.getTransceivers()[0].receiver.transport
        seen: list[bytes] = []
        original = dtls._handle_rtp_data

        async def tap(data: bytes, arrival_time_ms: int) -> None:
            seen.append(data)
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = tap
        peer.start(loopback)
        await browser.answer(peer.answer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while len(seen) < 60 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        out = peer._sender
        assert out is not None
        # packets handed to the DTLS transport (or failed), and those on their way to it
        counts = (out.sent + out.errors, len(out._pending), peer.twcc.sent if peer.twcc else 0)
        await browser.close()
        await peer.close()
        return peer, seen, counts

    peer, seen, (handed, pending, numbered) = asyncio.run(asyncio.wait_for(main(), 30))
    assert len(seen) >= 60  # voxwire's echo reached the browser, still valid RTP
    if mode != "offered":
        assert peer.twcc is None
        assert "transport-cc" not in peer.answer
        assert all(not data[0] & 0x10 for data in seen)  # no header extension at all
        return
    assert peer.twcc is not None
    assert f"a=rtcp-fb:{peer.offer.opus} transport-cc" in peer.answer
    numbers = [int.from_bytes(_elements(data)[3], "big") for data in seen]
    first = numbers[0]
    assert numbers == [(first + i) & 0xFFFF for i in range(len(numbers))]  # +1 a packet
    assert peer.twcc.sent >= len(seen)
    assert handed <= numbered <= handed + pending  # every packet sent got a number


async def _connected_peer_with_transport_cc() -> tuple[Browser, WebRtcPeer]:
    browser = Browser(np.tile(SAID, 3))
    peer = await WebRtcPeer.accept(offer_transport_cc(await browser.offer()))
    peer.start(loopback)
    await browser.answer(peer.answer)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    assert peer.twcc is not None
    while peer.twcc.sent < 130 and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return browser, peer


def test_transport_feedback_reporting_loss_moves_voxwires_opus() -> None:
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    from voxwire.twcc import build_transport_feedback

    async def main() -> dict[str, Any]:
        browser, peer = await _connected_peer_with_transport_cc()
        twcc = peer.twcc
        assert twcc is not None
        encoder = peer.call.session.opus_encoder
        assert encoder is not None
        start = encoder.bitrate
        dtls = peer.pc.getTransceivers()[0].receiver.transport
        first = (twcc.next_sequence - twcc.sent) & 0xFFFF
        assert peer.control is not None
        # before: the aiortc peer's receiver reports (no loss on loopback), if any came
        got: dict[str, Any] = {"start": start, "before": peer.control.loss}
        # 120 packets reported in four feedbacks, 1 in 7 lost: two loss figures
        statuses = [0 if i % 7 == 3 else 1 for i in range(120)]
        for fb_count in range(4):
            part = statuses[30 * fb_count : 30 * fb_count + 30]
            fb = build_transport_feedback(
                0x4242,
                peer.pc.getTransceivers()[0].sender._ssrc,
                base_sequence=(first + 30 * fb_count) & 0xFFFF,
                reference_time=100,
                feedback_count=fb_count,
                statuses=part,
                deltas=[80] * part.count(1),
            )
            await dtls._handle_rtcp_data(fb)
            got[f"figures after {fb_count}"] = peer.feedback_reports
        got["lost"] = (statuses[:60].count(0), statuses[60:].count(0))
        # the same feedback again: nothing new, no second figure
        await dtls._handle_rtcp_data(fb)
        # a receiver report saying no loss, while the feedback flows: counted, not used
        ours = peer.pc.getTransceivers()[0].sender._ssrc
        info = RtcpReceiverInfo(
            ssrc=ours, fraction_lost=0, packets_lost=0, highest_sequence=9, jitter=0, lsr=0, dlsr=0
        )
        reports = peer.reports
        await dtls._handle_rtcp_data(bytes(RtcpRrPacket(ssrc=0x4242, reports=[info])))
        got |= {
            "bitrate": encoder.bitrate,
            "percent": encoder.packet_loss_percent,
            "feedback": peer.transport_feedback,
            "figures": peer.feedback_reports,
            "rr": peer.reports - reports,
            "loss": peer.control.loss if peer.control else None,
            "errors": peer.feedback_errors,
        }
        # malformed feedback is counted and refused, and aiortc still gets the compound
        await dtls._handle_rtcp_data(fb[:-4])
        await dtls._handle_rtcp_data(b"\x8f\xcd\x00\x01" + bytes(4))
        got["errors after"] = peer.feedback_errors
        await browser.close()
        await peer.close()
        return got

    got = asyncio.run(asyncio.wait_for(main(), 40))
    assert got["start"] == 24000
    assert [got[f"figures after {i}"] for i in range(4)] == [0, 1, 1, 2]  # one per 60
    assert got["lost"] == (9, 8)
    # the controller's smoothing (alpha 0.5) of 9/60 and 8/60 from where it stood
    loss = 9 / 60 if got["before"] is None else 0.5 * 9 / 60 + 0.5 * got["before"]
    loss = 0.5 * 8 / 60 + 0.5 * loss
    assert got["loss"] == pytest.approx(loss)  # and the receiver report did not move it
    assert got["bitrate"] == 40000  # above 8%: the top tier
    assert got["percent"] == max(10, round(1.25 * loss * 100 + 1))
    assert got["feedback"] == 5
    assert got["figures"] == 2
    assert got["rr"] == 1  # the report was counted
    assert got["errors"] == 0
    assert got["errors after"] == 2


def test_receiver_reports_drive_the_encoder_when_no_feedback_flows() -> None:
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    async def main() -> dict[str, Any]:
        browser, peer = await _connected_peer_with_transport_cc()
        encoder = peer.call.session.opus_encoder
        assert encoder is not None
        assert peer.control is not None
        dtls = peer.pc.getTransceivers()[0].receiver.transport
        ours = peer.pc.getTransceivers()[0].sender._ssrc
        info = RtcpReceiverInfo(
            ssrc=ours, fraction_lost=38, packets_lost=9, highest_sequence=9, jitter=0, lsr=0, dlsr=0
        )
        got: dict[str, Any] = {"before": peer.control.loss}
        for _ in range(3):
            await dtls._handle_rtcp_data(bytes(RtcpRrPacket(ssrc=0x4242, reports=[info])))
        got |= {
            "loss": peer.control.loss,
            "bitrate": encoder.bitrate,
            "feedback": peer.transport_feedback,
        }
        await browser.close()
        await peer.close()
        return got

    got = asyncio.run(asyncio.wait_for(main(), 40))
    assert got["feedback"] == 0  # the aiortc peer sends no transport feedback
    loss = got["before"]
    for _ in range(3):
        loss = 38 / 256 if loss is None else 0.5 * 38 / 256 + 0.5 * loss
    assert got["loss"] == pytest.approx(loss)
    assert got["bitrate"] == 40000
