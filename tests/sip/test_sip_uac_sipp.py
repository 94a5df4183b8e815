"""voxwire's SIP client (outbound calls, transfer, registration) against SIPp as the callee
or the registrar, over loopback UDP (and TCP for the answered call).

Each test starts SIPp in server mode with a scenario written for voxwire
(``scenarios/uas_*.xml``, ``scenarios/registrar*.xml``), makes the call or the
registration with :mod:`voxwire.aio.sip_uac` (or ``voxwire dial``) and asserts both
SIPp's exit code (0: the scenario went as written) and voxwire's outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pytest

from tests.sip.audio_match import windowed_correlation
from tests.sip.test_sip_sipp import free_udp_port, received
from voxwire.aio.sip_uac import OutboundCall, open_dialer
from voxwire.protocols.events import Audio, CallStarted, Stopped
from voxwire.sip.auth import parse_digest
from voxwire.sip.uac import Registered

SIPP = shutil.which("sipp")
pytestmark = pytest.mark.skipif(SIPP is None, reason="needs sipp (apt-get install sip-tester)")

SCENARIOS = Path(__file__).parent / "scenarios"
HOST = "127.0.0.1"
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 40.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class Sipp:
    """SIPp in server mode on a free port, running one scenario once."""

    def __init__(self, scenario: str, cwd: Path, *args: str) -> None:
        self.scenario = scenario
        self.cwd = cwd
        self.args = args
        self.port = free_udp_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.messages = cwd / f"{Path(scenario).stem}.messages.log"
        self.errors = cwd / f"{Path(scenario).stem}.errors.log"

    @property
    def uri_host(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> None:
        assert SIPP is not None
        self.proc = await asyncio.create_subprocess_exec(
            SIPP,
            "-sf",
            str(SCENARIOS / self.scenario),
            "-i",
            HOST,
            "-p",
            str(self.port),
            "-mi",
            HOST,
            "-mp",
            str(free_udp_port()),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            str(self.messages),
            "-trace_err",
            "-error_file",
            str(self.errors),
            *self.args,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await asyncio.sleep(0.3)  # bound before the first INVITE (Timer A covers a late start)

    async def finish(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            await asyncio.wait_for(self.proc.communicate(), timeout)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def log(self) -> str:
        read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
        return read(self.messages) + read(self.errors)


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    """A voiced test signal: a few harmonics with a slow pitch glide, and pauses."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * 1.5 * t) > -0.3).astype(np.float64)
    return (6000 * voice * gate).astype(np.int16)


async def play_and_listen(call: OutboundCall, heard: list[np.ndarray], said: np.ndarray) -> None:
    """Play ``said`` and keep what comes back (SIPp's -rtp_echo sends it back) for 4 s."""
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    async for event in call:
        if isinstance(event, CallStarted):
            call.play(said, 16000)
            deadline = loop.time() + 4.0
        elif isinstance(event, Audio):
            heard.append(np.frombuffer(event.pcm, np.int16).copy())
        if deadline is not None and loop.time() > deadline:
            return


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_an_answered_call_runs_the_handler_hears_its_echo_and_hangs_up(
    tmp_path: Path, transport: Literal["udp", "tcp"]
) -> None:
    said = tone(2.0)
    heard: list[np.ndarray] = []

    async def scenario() -> None:
        # over TCP SIPp listens on its port and answers on the connection voxwire makes
        sipp = Sipp("uas_answer.xml", tmp_path, "-rtp_echo", *(["-t", "t1"] * (transport == "tcp")))
        await sipp.start()
        async with await open_dialer(HOST, transport=transport) as dialer:

            async def handler(call: OutboundCall) -> None:
                await play_and_listen(call, heard, said)

            result = await dialer.dial(f"sip:callee@{sipp.uri_host}", handler, ring_timeout=10)
            assert result.outcome == "answered", result
            assert result.status == 200
            assert 180 in result.progress
            assert result.call is not None
            assert not result.call.ended_by_remote
            code = await sipp.finish()
            assert code == 0, sipp.log()
            assert dialer.client.counters["request_sent_BYE"] == 1
            assert dialer.client.counters["received_200"] >= 2  # the INVITE's and the BYE's
            if transport == "tcp":
                assert dialer.client.counters["retransmitted_INVITE"] == 0  # reliable
                assert dialer.connect_errors == 0
                assert "SIP/2.0/TCP" in sipp.messages.read_text()  # the Via said so

    run(scenario())
    back = np.concatenate(heard)
    value, whole = windowed_correlation(said, back, 16000)
    print(f"echo correlation windows {value:.3f}, whole {whole:.3f}")
    assert value > 0.8


def test_a_digest_challenge_is_answered_and_the_callees_bye_ends_the_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        sipp = Sipp("uas_digest.xml", tmp_path, "-set", "password", "s3cret-pw")
        await sipp.start()
        async with await open_dialer(HOST, user="alice", password="s3cret-pw") as dialer:
            stopped: list[str] = []

            async def handler(call: OutboundCall) -> None:
                stopped.extend([e.reason async for e in call if isinstance(e, Stopped)])

            result = await dialer.dial(f"sip:callee@{sipp.uri_host}", handler, ring_timeout=10)
            code = await sipp.finish()
            assert code == 0, sipp.log()
            assert result.outcome == "answered", result
            assert result.call is not None
            assert result.call.ended_by_remote
            assert stopped == ["remote hung up"]
            counters = dialer.client.counters
            assert counters["received_401"] == 1
            assert counters["request_sent_INVITE"] == 2
            assert counters["request_received_BYE"] == 1
            assert counters["response_200"] == 1
            assert counters["request_sent_BYE"] == 0

    run(scenario())


def test_a_proxy_challenge_is_answered_with_proxy_authorization(tmp_path: Path) -> None:
    async def scenario() -> None:
        sipp = Sipp("uas_proxy_digest.xml", tmp_path)
        await sipp.start()
        async with await open_dialer(HOST, user="alice", password="proxy-pw") as dialer:
            result = await dialer.dial(f"sip:callee@{sipp.uri_host}", _until_end, ring_timeout=10)
            code = await sipp.finish()
            assert code == 0, sipp.log()
            assert result.outcome == "answered", result
            assert dialer.client.counters["received_407"] == 1
        # the digest as SIPp received it, checked here (RFC 7616 section 3.4.1, MD5)
        line = next(
            x
            for x in sipp.messages.read_text().splitlines()
            if x.startswith("Proxy-Authorization:")
        )
        p = parse_digest(line.partition(":")[2]) or {}

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5("alice:voxwire-proxy:proxy-pw")
        ha2 = md5(f"INVITE:{p['uri']}")
        expected = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        assert p["response"] == expected
        assert p["nonce"] == "4f2a9c1b7d3e"

    run(scenario())


async def _until_end(call: OutboundCall) -> None:
    async for _ in call:
        pass


def test_wrong_credentials_fail_the_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        sipp = Sipp("uas_digest.xml", tmp_path, "-set", "password", "the-right-one")
        await sipp.start()
        async with await open_dialer(HOST, user="alice", password="a-wrong-one") as dialer:
            result = await dialer.dial(f"sip:callee@{sipp.uri_host}", _never, ring_timeout=10)
            code = await sipp.finish()
            assert result.outcome == "failed", result
            assert result.status == 403
            assert code == 1, sipp.log()  # the scenario's wrong-credentials branch fails
            assert dialer.client.calls == 0

    run(scenario())


async def _never(call: OutboundCall) -> None:
    raise AssertionError("the call was not to be answered")


def test_a_transfer_refers_the_callee_follows_the_notifies_and_ends_the_call(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        sipp = Sipp("uas_refer.xml", tmp_path)
        await sipp.start()
        async with await open_dialer(HOST) as dialer:
            outcome: list[bool] = []

            async def handler(call: OutboundCall) -> None:
                async for event in call:
                    if isinstance(event, CallStarted):
                        ok = await call.transfer("sip:human@192.0.2.50:5060")
                        outcome.append(ok)

            result = await dialer.dial(f"sip:callee@{sipp.uri_host}", handler, ring_timeout=10)
            code = await sipp.finish()
            assert code == 0, sipp.log()
            assert outcome == [True]
            call = result.call
            assert call is not None
            assert call.transferred
            assert call.transfer_statuses == [202, 100, 200]
            counters = dialer.client.counters
            assert counters["request_sent_REFER"] == 1
            assert counters["request_received_NOTIFY"] == 2
            assert counters["request_sent_BYE"] == 1
            assert received(sipp.messages.read_text(), "BYE ") == 1

    run(scenario())


def test_a_registration_is_challenged_refreshed_before_it_expires_and_removed(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        sipp = Sipp("registrar.xml", tmp_path, "-set", "password", "ext-pw")
        await sipp.start()
        dialer = await open_dialer(HOST, user="alice", password="ext-pw")
        try:
            ok = await dialer.register(
                f"sip:alice@{sipp.uri_host}", registrar=f"sip:{sipp.uri_host}", expires=60
            )
            assert ok
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(dialer.registrations) < 2 and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert dialer.registrations[:2] == [
                Registered(f"sip:alice@{sipp.uri_host}", 2),
                Registered(f"sip:alice@{sipp.uri_host}", 2),
            ]
        finally:
            await dialer.aclose()
        code = await sipp.finish()
        assert code == 0, sipp.log()
        assert dialer.registrations[-1] == Registered(f"sip:alice@{sipp.uri_host}", 0)
        counters = dialer.client.counters
        assert counters["request_sent_REGISTER"] == 4  # challenged, answered, refresh, removal
        assert counters["received_401"] == 1

    run(scenario())


# --- the command line: its exit status for each outcome ---------------------------------


def voxwire_dial(
    uri: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # the voxwire this interpreter imports (a wheel in CI), not the source tree's
    environment = {**os.environ, **(env or {})}
    if env is None:
        environment.pop("VOXWIRE_SIP_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "voxwire", "dial", uri, "--json", "-q", *args],
        capture_output=True,
        text=True,
        timeout=40,
        env=environment,
    )


async def dial_against(
    scenario: str,
    tmp_path: Path,
    *args: str,
    sipp_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], int, Sipp]:
    sipp = Sipp(scenario, tmp_path, *sipp_args)
    await sipp.start()
    uri = f"sip:callee@{sipp.uri_host}"
    result = await asyncio.to_thread(voxwire_dial, uri, *args, env=env)
    code = await sipp.finish()
    return result, code, sipp


def report(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    import json

    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout + result.stderr
    value = json.loads(lines[-1])
    assert isinstance(value, dict)
    return value


def test_cli_answered_exits_0(tmp_path: Path) -> None:
    result, code, sipp = run(
        dial_against(
            "uas_answer.xml", tmp_path, "--echo", "--max-duration", "1.5", sipp_args=("-rtp_echo",)
        )
    )
    assert code == 0, sipp.log()
    assert result.returncode == 0, result.stderr
    assert report(result)["outcome"] == "answered"


def test_cli_digest_with_the_password_from_the_environment_exits_0(tmp_path: Path) -> None:
    result, code, sipp = run(
        dial_against(
            "uas_digest.xml",
            tmp_path,
            "--sip-user",
            "alice",
            sipp_args=("-set", "password", "from-env"),
            env={"VOXWIRE_SIP_PASSWORD": "from-env"},
        )
    )
    assert code == 0, sipp.log()
    assert result.returncode == 0, result.stderr
    assert report(result)["ended_by_remote"] is True
    assert "from-env" not in result.stdout + result.stderr


def test_cli_busy_exits_3(tmp_path: Path) -> None:
    result, code, sipp = run(dial_against("uas_busy.xml", tmp_path))
    assert code == 0, sipp.log()
    assert result.returncode == 3, result.stdout + result.stderr
    assert report(result) == {
        "outcome": "busy",
        "status": 486,
        "reason": "Busy Here",
        "progress": [],
    }


def test_cli_no_answer_is_cancelled_and_exits_4(tmp_path: Path) -> None:
    result, code, sipp = run(dial_against("uas_no_answer.xml", tmp_path, "--ring-timeout", "1"))
    assert code == 0, sipp.log()
    assert result.returncode == 4, result.stdout + result.stderr
    value = report(result)
    assert value["outcome"] == "no_answer"
    assert value["status"] == 487
    assert value["progress"] == [180]


def test_cli_transfer_exits_5(tmp_path: Path) -> None:
    result, code, sipp = run(
        dial_against(
            "uas_refer.xml",
            tmp_path,
            "--transfer-to",
            "sip:human@192.0.2.50:5060",
            "--transfer-after",
            "0.5",
        )
    )
    assert code == 0, sipp.log()
    assert result.returncode == 5, result.stdout + result.stderr
    assert report(result)["transfer_statuses"] == [202, 100, 200]


def test_cli_nobody_there_exits_1() -> None:
    result = voxwire_dial(f"sip:nobody@{HOST}:{free_udp_port()}", "--ring-timeout", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert report(result) == {
        "outcome": "failed",
        "status": 408,
        "reason": "no response",
        "progress": [],
    }


def test_cli_usage_errors_exit_2() -> None:
    assert voxwire_dial("tel:+15551234").returncode == 2
    assert voxwire_dial(f"sip:a@{HOST}", "--codecs", "gsm").returncode == 2


def test_serve_registers_as_an_extension_refreshes_and_unregisters_on_sigterm(
    tmp_path: Path,
) -> None:
    import signal

    async def scenario() -> None:
        sipp = Sipp("registrar.xml", tmp_path, "-set", "password", "ext-secret")
        await sipp.start()
        serve = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voxwire",
            "serve",
            "--protocol",
            "sip",
            "--echo",
            "--host",
            HOST,
            "--port",
            "0",
            "--sip-register",
            f"sip:alice@{sipp.uri_host}",
            "--sip-register-expires",
            "60",
            env={
                **os.environ,
                "VOXWIRE_SIP_PASSWORD": "ext-secret",
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            # the challenged REGISTER, the answered one, and the refresh 1 s after the 200
            while loop.time() < deadline:
                log = sipp.messages.read_text(errors="replace") if sipp.messages.exists() else ""
                if received(log, "REGISTER ") >= 3:
                    break
                await asyncio.sleep(0.1)
            assert received(log, "REGISTER ") >= 3, log
            serve.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(serve.communicate(), 15)
        finally:
            if serve.returncode is None:
                serve.kill()
                await serve.wait()
        assert serve.returncode == 0, err.decode()
        assert b"ext-secret" not in out + err
        code = await sipp.finish()
        assert code == 0, sipp.log()
        assert received(sipp.messages.read_text(), "REGISTER ") == 4

    run(scenario())


def test_the_echo_agent_runs_on_an_outbound_call(tmp_path: Path) -> None:
    import functools

    from tests.sip.test_sip_sipp import Recorder, caller_audio, echo_correlation
    from voxwire.agents.echo import EchoStats, echo_handler

    _, words = caller_audio(tmp_path)
    (tmp_path / "callee.ulaw").write_bytes((tmp_path / "caller.ulaw").read_bytes())
    stats: list[EchoStats] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        rtp, recorder = await loop.create_datagram_endpoint(Recorder, local_addr=(HOST, 0))
        try:
            port = rtp.get_extra_info("sockname")[1]
            sipp = Sipp("uas_speaks.xml", tmp_path, "-set", "rtp_port", str(port))
            await sipp.start()
            echo = functools.partial(echo_handler, rate=16000, on_end=lambda c, s: stats.append(s))
            async with await open_dialer(HOST) as dialer:
                result = await dialer.dial(f"sip:callee@{sipp.uri_host}", echo, ring_timeout=10)
            code = await sipp.finish()
            assert code == 0, sipp.log()
            assert result.outcome == "answered"
            assert result.call is not None
            assert result.call.ended_by_remote
            assert echo_correlation(recorder, words) > 0.8
        finally:
            rtp.close()

    run(scenario())
    assert stats
    assert stats[0].utterances >= 1


def test_cli_a_voice_agent_greets_on_an_outbound_call(tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx", reason="the demo agent's recogniser")
    pytest.importorskip("espeakng_loader", reason="the demo agent's voice")
    from tests.sip.test_sip_sipp import Recorder

    # the callee says nothing (mu-law silence), so nothing talks over the greeting
    (tmp_path / "callee.ulaw").write_bytes(b"\xff" * 160 * 300)

    async def scenario() -> tuple[subprocess.CompletedProcess[str], int, Recorder, Sipp]:
        loop = asyncio.get_running_loop()
        rtp, recorder = await loop.create_datagram_endpoint(Recorder, local_addr=(HOST, 0))
        try:
            port = rtp.get_extra_info("sockname")[1]
            sipp = Sipp("uas_speaks.xml", tmp_path, "-set", "rtp_port", str(port))
            await sipp.start()
            uri = f"sip:callee@{sipp.uri_host}"
            result = await asyncio.to_thread(voxwire_dial, uri, "--agent", "demo")
            return result, await sipp.finish(), recorder, sipp
        finally:
            rtp.close()

    result, code, recorder, sipp = run(scenario(), timeout=60)
    assert code == 0, sipp.log()
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result)["ended_by_remote"] is True
    # the demo agent speaks first (its greeting): a second of speech at least
    voiced = [p for p in recorder.packets if p.payload_type == 0]
    assert len(voiced) >= 50, len(voiced)


def test_an_agent_transfers_an_inbound_caller_to_a_human(tmp_path: Path) -> None:
    from tests.sip.test_sip_sipp import sipp as run_sipp
    from voxwire.aio.sip import SipCall, serve_sip

    outcome: list[bool] = []
    calls: list[SipCall] = []

    async def agent(call: SipCall) -> None:
        calls.append(call)
        outcome.append(await call.transfer("sip:human@192.0.2.50:5060"))

    async def scenario() -> None:
        server = await serve_sip(agent, HOST, 0)  # type: ignore[arg-type]
        try:
            result = await run_sipp("caller_transferred.xml", server.local_addr, tmp_path)
            assert result.returncode == 0, result.errors or result.stdout
            counters = server.sip.counters
            assert counters["request_sent_REFER"] == 1
            assert counters["request_NOTIFY"] == 2
            assert counters["request_sent_BYE"] == 1
        finally:
            await server.aclose()

    run(scenario())
    assert outcome == [True]
    assert calls[0].transferred
    assert calls[0].transfer_statuses == [202, 100, 200]
