"""An Opus call from baresip (a real SIP user agent) to voxwire's SIP server, on loopback.

baresip dials the server with Opus only, plays a WAV of speech through its aufile
source, and records what it decodes from the bot (its sndfile module); the echo agent
answers the utterance, baresip hangs up at the end of its file. The test asserts
baresip's exit code, the SIP exchange the server counted, the negotiated codec, and that
what baresip heard back correlates with what it said.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.sip.audio_match import windowed_correlation
from voxwire.agents.echo import EchoStats, echo_handler
from voxwire.aio.sip import SipCall, serve_sip
from voxwire.protocols.events import CallStarted
from voxwire.resample import Resampler
from voxwire.sip.auth import Authenticator

BARESIP = shutil.which("baresip")
pytestmark = pytest.mark.skipif(BARESIP is None, reason="needs baresip (Debian package baresip)")

HOST = "127.0.0.1"


def _config(directory: Path) -> None:
    (directory / "dump").mkdir()
    (directory / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen {HOST}:0",
                "audio_player alsa,null",  # a player makes the receive path run
                f"audio_source aufile,{directory / 'in.wav'}",
                "audio_alert aufile,/dev/null",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module opus.so",
                "module aufile.so",
                "module alsa.so",
                "module sndfile.so",
                "module_app account.so",
                "module_app menu.so",
                f"snd_path {directory / 'dump'}",
                "opus_inbandfec yes",
                "opus_stereo no",  # a mono source; baresip 1.0.0 then names it opus/48000/1
                "opus_sprop_stereo no",
                "",
            ]
        )
    )
    # Opus only (its SDP still says opus/48000/2, as RFC 7587 section 7 wants)
    (directory / "accounts").write_text(f"<sip:caller@{HOST}>;regint=0;audio_codecs=opus/48000/1\n")


def test_baresip_calls_with_opus_and_hears_its_words_echoed(tmp_path: Path) -> None:
    pytest.importorskip("opuslib", reason="Opus needs voxwire[opus]")
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    from voxwire.sim import synthesize

    words = synthesize("Hello, echo test.", 48000, seed=1)
    line = np.concatenate([np.zeros(9600, np.int16), words, np.zeros(3 * 48000, np.int16)])
    with wave.open(str(tmp_path / "in.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(48000)
        f.writeframes(line.tobytes())
    _config(tmp_path)

    async def scenario() -> tuple[int, str, list[SipCall], list[EchoStats], dict[str, int]]:
        calls: list[SipCall] = []
        ended: list[EchoStats] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await echo_handler(call, rate=16000, on_end=lambda c, s: ended.append(s))

        server = await serve_sip(handler, HOST, 0, codecs=("opus", "pcmu"))
        assert BARESIP is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                BARESIP,
                "-n",
                HOST,  # name the loopback address in SDP, not the machine's interface
                "-f",
                str(tmp_path),
                "-e",
                f"/dial sip:bot@{HOST}:{server.local_addr[1]}",
                "-t",
                "7",  # seconds: the call ends at the end of the file, at 4.5 s
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
        return (
            proc.returncode,
            out.decode(errors="replace"),
            calls,
            ended,
            dict(server.sip.counters),
        )

    returncode, output, calls, ended, counters = asyncio.run(asyncio.wait_for(scenario(), 40))
    assert returncode == 0, output[-2000:]
    assert "Call established" in output, output[-3000:]
    assert counters["request_INVITE"] == counters["request_ACK"] == counters["request_BYE"] == 1
    assert counters["response_200"] == 2
    (call,) = calls
    assert call.session.codec == "opus"
    assert call.ended_by_remote  # baresip hung up at the end of its file
    assert call.latched_to is None  # its SDP named the address it sends from
    assert call.stats.rtp is not None
    assert call.stats.rtp.lost == 0
    (stats,) = ended
    assert stats.utterances >= 1, stats
    assert stats.replies_played >= 1, stats
    (decoded,) = (tmp_path / "dump").glob("*-dec.wav")
    with wave.open(str(decoded)) as f:
        assert (f.getframerate(), f.getnchannels()) == (48000, 1)
        heard = np.frombuffer(f.readframes(f.getnframes()), np.int16)
    # compare at 16 kHz: the bot speaks Opus at its 16 kHz pipeline rate
    reference = Resampler(48000, 16000).process(words)
    value, whole = windowed_correlation(reference, Resampler(48000, 16000).process(heard), 16000)
    print(f"baresip heard its words back: windows {value:.3f}, whole {whole:.3f}")
    assert value > 0.8, (value, whole)


def test_baresip_answers_the_digest_challenge(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "in.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(np.zeros(8000, np.int16).tobytes())  # 1 s: baresip hangs up after it
    _config(tmp_path)
    # the password is in baresip's account file, never on a command line
    (tmp_path / "accounts").write_text(
        f"<sip:caller@{HOST}>;auth_user=pbx;auth_pass=ext-204-pw;regint=0;audio_codecs=PCMU\n"
    )

    async def scenario() -> tuple[int, str, list[SipCall], dict[str, int]]:
        calls: list[SipCall] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            await echo_handler(call, rate=16000)

        # libre 1.1 (baresip 1.0.0) gives up on a SHA-256 challenge: MD5 alone
        auth = Authenticator({"pbx": "ext-204-pw"}, realm="bot", algorithms=("MD5",))
        server = await serve_sip(handler, HOST, 0, auth=auth)
        assert BARESIP is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                BARESIP,
                "-n",
                HOST,
                "-f",
                str(tmp_path),
                "-e",
                f"/dial sip:bot@{HOST}:{server.local_addr[1]}",
                "-t",
                "4",
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
        return proc.returncode, out.decode(errors="replace"), calls, dict(server.sip.counters)

    returncode, output, calls, counters = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert returncode == 0, output[-2000:]
    assert "Call established" in output, output[-3000:]
    assert counters["response_401"] == 1
    assert counters["auth_no_credentials"] == counters["auth_authorized"] == 1
    assert counters["request_INVITE"] == counters["request_ACK"] == 2  # each answer's ACK
    (call,) = calls
    assert call.incoming.user == "pbx"
    assert call.ended_by_remote


def test_baresip_hears_the_keys_the_bot_presses(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "in.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(8000)
        f.writeframes(np.zeros(3 * 8000, np.int16).tobytes())
    _config(tmp_path)
    (tmp_path / "accounts").write_text(f"<sip:caller@{HOST}>;regint=0;audio_codecs=PCMU\n")

    async def scenario() -> tuple[int, str, list[SipCall]]:
        calls: list[SipCall] = []

        async def handler(call: SipCall) -> None:
            calls.append(call)
            async for event in call:
                if isinstance(event, CallStarted):
                    await call.send_dtmf("1#", duration_ms=120)
                    # baresip's jitter buffer lets the last packets out when more come
                    call.play(np.zeros(4000, np.int16))

        server = await serve_sip(handler, HOST, 0)
        assert BARESIP is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                BARESIP,
                "-n",
                HOST,
                "-f",
                str(tmp_path),
                "-e",
                f"/dial sip:bot@{HOST}:{server.local_addr[1]}",
                "-t",
                "4",
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
        finally:
            await server.aclose()
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), calls

    returncode, output, calls = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert returncode == 0, output[-2000:]
    (call,) = calls
    assert call.answer.telephone_event is not None  # baresip offers telephone-event
    assert call.dtmf_sent == 2
    events = re.findall(r"received event: '(.)' \(end=(.)\)", output)
    assert events == [("1", "0"), ("1", "1"), ("#", "0"), ("#", "1")], output[-3000:]
