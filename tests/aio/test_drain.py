"""Admission and drain with real processes, signals and sockets: ``voxwire serve`` with
``--drain-timeout``, ``--max-calls`` and ``--workers``; the calls are the load generator's
simulated phones (:func:`voxwire.sim.load.run_load`), which record close codes and
refused upgrades."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader", reason="the callers' speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the servers and phones need websockets")

from voxwire.agents.server import serve_echo
from voxwire.aio.admission import Admission
from voxwire.sim.load import LoadReport, run_load


class Server:
    """A ``voxwire serve`` subprocess; its URL from the ready line."""

    def __init__(self, *args: str, new_session: bool = False) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voxwire", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=new_session,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert " on " in line, line + self.process.stderr.read()  # type: ignore[union-attr]
        self.url = line.split(" on ", 1)[1].split()[0]

    def stop(self, timeout: float, *, ctrl_c: bool = False) -> tuple[int, str, str, float]:
        """SIGTERM (or SIGINT to the process group, as a terminal's Ctrl-C does);
        (exit status, stdout, stderr, seconds to exit)."""
        began = time.monotonic()
        if ctrl_c:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err, time.monotonic() - began

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def load(url: str, protocol: str, calls: int, duration: float) -> asyncio.Task[LoadReport]:
    return asyncio.get_running_loop().create_task(
        run_load(url, protocol, calls, duration=duration, ramp=0.0, barge_every=0)
    )


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.update(int(c) for c in (task / "children").read_text().split())
    return out


def _library(name: str) -> list[str]:
    """``voxwire serve``'s options for the WebSocket library ``name``."""
    if name == "picows":
        pytest.importorskip("picows", reason="--ws picows needs voxwire[picows]")
        return ["--ws", "picows"]
    return []


@pytest.mark.parametrize("library", ["websockets", "picows"])
def test_sigterm_lets_the_open_call_finish_and_refuses_new_ones(
    servers: list[Server], library: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        agent_port = s.getsockname()[1]
    server = Server(
        "--protocol", "vonage", "--echo", "--drain-timeout", "20", "--agent-port", str(agent_port),
        *_library(library),
    )  # fmt: skip
    servers.append(server)

    async def agent() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", agent_port)
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data.decode()

    async def main() -> tuple[LoadReport, LoadReport, tuple[int, str, str, float]]:
        first = load(server.url, "vonage", 1, 6.0)
        await asyncio.sleep(1.5)  # the call is up, its first turn under way
        replies.append(await agent())
        stopping = asyncio.get_running_loop().run_in_executor(None, server.stop, 30)
        await asyncio.sleep(0.5)
        replies.append(await agent())
        late = await run_load(server.url, "vonage", 1, duration=1.0, ramp=0.0)
        return await first, late, await stopping

    replies: list[str] = []
    first, late, (status, out, err, took) = asyncio.run(main())
    assert replies == ["up 100%\n", "drain\n"]  # no call limit: load 0 until the drain
    assert first.completed == 1, first.summary()
    assert first.replies_missed == 0
    assert first.turns >= 2  # the call went on talking after the signal
    assert late.errors == {"http 503": 1}
    assert status == 0, err
    assert "stopped" in out
    # it exited once the call ended, not at the drain deadline
    assert took < 15
    assert "draining: 1 call(s) up" in err


@pytest.mark.parametrize("library", ["websockets", "picows"])
def test_drain_deadline_closes_calls_going_away(servers: list[Server], library: str) -> None:
    server = Server("--protocol", "twilio", "--echo", "--drain-timeout", "1", *_library(library))
    servers.append(server)

    async def main() -> tuple[LoadReport, tuple[int, str, str, float]]:
        call = load(server.url, "twilio", 2, 20.0)
        await asyncio.sleep(1.5)
        stopping = asyncio.get_running_loop().run_in_executor(None, server.stop, 15)
        return await call, await stopping

    report, (status, _, err, took) = asyncio.run(main())
    assert report.errors == {"1001": 2}
    assert status == 0, err
    assert 1.0 <= took < 6


def test_max_calls_refuses_the_excess_before_the_upgrade() -> None:
    admission = Admission(max_calls=2)

    async def main() -> tuple[LoadReport, LoadReport, int]:
        stop = asyncio.Event()
        urls: list[str] = []
        server = asyncio.create_task(
            serve_echo(
                "twilio",
                "127.0.0.1",
                0,
                stop=stop,
                ready=urls.append,
                admission=admission,
                on_end=lambda c, s: None,
            )
        )
        while not urls:
            await asyncio.sleep(0.01)
        try:
            many = await run_load(urls[0], "twilio", 4, duration=1.0, ramp=0.2, barge_every=0)
            for _ in range(100):
                if admission.active == 0:
                    break
                await asyncio.sleep(0.02)
            again = await run_load(urls[0], "twilio", 1, duration=1.0, ramp=0.0)
            return many, again, admission.active
        finally:
            stop.set()
            await server

    many, again, held = asyncio.run(main())
    assert many.completed == 2
    assert many.errors == {"http 503": 2}
    assert admission.refused == {"draining": 0, "full": 2}
    assert again.completed == 1  # the slots came back when the calls ended
    assert held == 0


def test_max_calls_hangs_up_audiosocket(servers: list[Server]) -> None:
    server = Server("--protocol", "audiosocket", "--echo", "--max-calls", "1")
    servers.append(server)

    async def main() -> tuple[LoadReport, LoadReport]:
        first = load(server.url, "audiosocket", 1, 3.0)
        await asyncio.sleep(0.8)
        second = await run_load(server.url, "audiosocket", 1, duration=1.0, ramp=0.0)
        return await first, second

    first, second = asyncio.run(main())
    assert first.completed == 1
    assert second.errors == {"closed": 1}  # hung up before any audio
    assert second.replies_expected == 0
    status, _, err, _ = server.stop(15)
    assert status == 0, err


def test_workers_share_the_port_restart_and_drain(servers: list[Server]) -> None:
    server = Server(
        "--protocol", "vonage", "--echo", "--workers", "2", "--drain-timeout", "20",
        new_session=True,
    )  # fmt: skip
    servers.append(server)
    pid = server.process.pid
    workers = children(pid)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = children(pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    restarted = children(pid)
    assert victim not in restarted
    assert len(restarted) == 2

    async def main() -> tuple[LoadReport, LoadReport, tuple[int, str, str, float]]:
        await asyncio.sleep(1.5)  # the new worker binds the port
        calls = load(server.url, "vonage", 4, 4.0)
        await asyncio.sleep(1.5)
        # Ctrl-C: SIGINT to every process of the group; the calls still finish
        stop = functools.partial(server.stop, 40, ctrl_c=True)
        stopping = asyncio.get_running_loop().run_in_executor(None, stop)
        await asyncio.sleep(0.5)
        late = await run_load(server.url, "vonage", 2, duration=1.0, ramp=0.0)
        return await calls, late, await stopping

    calls, late, (status, out, err, took) = asyncio.run(main())
    assert calls.completed == 4, calls.summary()
    assert calls.replies_missed == 0
    # both workers drain: a new call finds a refusing worker or a closed port
    assert late.completed == 0
    assert set(late.errors) <= {"http 503", "ConnectionRefusedError"}
    assert status == 0, err
    assert "exited with -9" in err
    assert out.strip().endswith("voxwire serve: stopped")
    assert took < 20
    for worker in restarted:
        assert not Path(f"/proc/{worker}").exists()


def test_a_worker_that_cannot_start_fails_the_server() -> None:
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxwire",
            "serve",
            "--protocol",
            "twilio",
            "--port",
            "0",
            "--agent",
            "no.such.module:factory",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "cannot load the agent" in done.stderr
    assert "before it was ready" in done.stderr
    assert time.monotonic() - began < 30  # not restarted over and over
