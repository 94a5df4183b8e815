"""voxwire's SIP client (outbound calls, transfer, registration) against SIPp as the callee
or the registrar, over loopback UDP.

Each test starts SIPp in server mode with a scenario written for voxwire
(``scenarios/uas_*.xml``, ``scenarios/registrar*.xml``), makes the call or the
registration with :mod:`voxwire.aio.sip_uac` (or ``voxwire dial``) and asserts both
SIPp's exit code (0: the scenario went as written) and voxwire's outcome.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from tests.sip.audio_match import windowed_correlation
from tests.sip.test_sip_sipp import free_udp_port, received
from voxwire.aio.sip_uac import OutboundCall, open_dialer
from voxwire.protocols.events import Audio, CallStarted
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


def test_an_answered_call_runs_the_handler_hears_its_echo_and_hangs_up(tmp_path: Path) -> None:
    said = tone(2.0)
    heard: list[np.ndarray] = []

    async def scenario() -> None:
        sipp = Sipp("uas_answer.xml", tmp_path, "-rtp_echo")
        await sipp.start()
        async with await open_dialer(HOST) as dialer:

            async def handler(call: OutboundCall) -> None:
                await play_and_listen(call, heard, said)

            result = await dialer.dial(f"sip:callee@{sipp.uri_host}", handler, ring_timeout=10)
            assert result.outcome == "answered", result
            assert result.status == 200 and 180 in result.progress
            assert result.call is not None and not result.call.ended_by_remote
            code = await sipp.finish()
            assert code == 0, sipp.log()
            assert dialer.client.counters["request_sent_BYE"] == 1
            assert dialer.client.counters["received_200"] >= 2  # the INVITE's and the BYE's

    run(scenario())
    back = np.concatenate(heard)
    value, whole = windowed_correlation(said, back, 16000)
    print(f"echo correlation windows {value:.3f}, whole {whole:.3f}")
    assert value > 0.8
