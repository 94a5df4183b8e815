"""The load generator (``voxwire loadtest``) against real servers over loopback sockets:
an echo server in this process, a ``voxwire serve --echo`` subprocess, a server whose
handler fails (errors by close code), and a port nobody listens on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

pytest.importorskip("espeakng_loader", reason="the callers' speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the servers and phones need websockets")

from tests.serving import serving
from voxwire.agents.server import serve_agent, serve_echo
from voxwire.aio import Call
from voxwire.protocols.events import CallStarted
from voxwire.sim.load import LoadProgress, LoadReport, process_tree_cpu, run_load


async def _with_server(serve: Any, body: Any) -> Any:
    stop = asyncio.Event()
    urls: list[str] = []
    server = asyncio.create_task(serve(stop, urls.append))
    try:
        for _ in range(500):
            if urls or server.done():
                break
            await asyncio.sleep(0.01)
        assert urls, "the server did not start"
        return await body(urls[0])
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)


def _echo(protocol: str) -> Any:
    def serve(stop: asyncio.Event, ready: Any) -> Any:
        return serve_echo(
            protocol, "127.0.0.1", 0, stop=stop, ready=ready, on_end=lambda c, s: None
        )

    return serve


def _sensible(report: LoadReport, calls: int, turns: int = 2) -> None:
    out = report.as_dict()
    assert out["calls_completed"] == calls, report.summary()
    assert out["errors_by_close_code"] == {}
    assert out["replies_missed"] == 0, report.summary()
    assert out["replies_expected"] >= turns * calls
    reply = out["reply_latency_ms"]
    assert reply["n"] == out["replies_expected"]
    # the echo replies after the VAD's 200 ms hangover, less the pre-roll it plays back
    assert 0 < reply["p50"] <= reply["p95"] <= reply["p99"] <= reply["max"] < 2000
    pacing = out["out_interval_ms"]
    assert pacing["n"] > 50 * calls
    assert 10 < pacing["p50"] < 30, pacing  # one 20 ms message per 20 ms
    assert out["generator"]["cpu_cores"] > 0
    assert out["generator"]["loop_lag_ms"]["n"] > 100


def test_load_against_an_in_process_server() -> None:
    seen: list[LoadProgress] = []

    async def body(url: str) -> LoadReport:
        return await run_load(
            url,
            "twilio",
            3,
            duration=4.0,
            ramp=0.3,
            server_pid=os.getpid(),
            progress=lambda p: seen.append(LoadProgress(**vars(p))),
            progress_interval=0.5,
        )

    report = asyncio.run(_with_server(_echo("twilio"), body))
    _sensible(report, 3)
    out = report.as_dict()
    assert out["barge_ins"] >= 3  # every other turn talks over the reply
    clear = out["clear_latency_ms"]
    assert clear["n"] == out["barge_ins"]
    assert out["clears_missing"] == 0
    assert 0 < clear["p50"] <= clear["max"] < 1000
    server = out["server"]
    assert server["pid"] == os.getpid()
    # this process is server and generator: its CPU is at least the generator's, to the
    # clock tick both are counted in (read a moment apart at each end of the window)
    tick = 2 / os.sysconf("SC_CLK_TCK") / out["window_s"]
    assert server["cpu_cores"] >= out["generator"]["cpu_cores"] - tick
    assert out["generator"]["cpu_cores"] > 0
    assert server["cpu_per_call"] == pytest.approx(server["cpu_cores"] / 3, abs=1e-4)
    assert any(p.up == 3 for p in seen)
    assert seen[-1].ended == 3
    assert seen[-1].failed == 0
    assert seen[-1].messages_received > 0


def test_load_over_tcp_audiosocket() -> None:
    async def body(url: str) -> LoadReport:
        return await run_load(url, "audiosocket", 2, duration=1.0, ramp=0.2, barge_every=0)

    report = asyncio.run(_with_server(_echo("audiosocket"), body))
    _sensible(report, 2, turns=1)
    assert report.as_dict()["server"] is None


def test_failed_calls_are_counted_by_close_code() -> None:
    async def fail_after_start(call: Call) -> None:
        async for event in call:
            if isinstance(event, CallStarted):
                raise RuntimeError("the agent fell over")

    def serve(stop: asyncio.Event, ready: Any) -> Any:
        return serve_agent(fail_after_start, "twilio", "127.0.0.1", 0, stop=stop, ready=ready)

    async def body(url: str) -> LoadReport:
        return await run_load(url, "twilio", 3, duration=2.0, ramp=0.0)

    report = asyncio.run(_with_server(serve, body))
    out = report.as_dict()
    assert out["calls_completed"] == 0
    assert out["errors_by_close_code"] == {"1011": 3}
    assert out["replies_missed"] == out["replies_expected"]  # closed before any reply


def test_unreachable_server_is_an_error_not_a_crash() -> None:
    report = asyncio.run(run_load("ws://127.0.0.1:9/", "vonage", 2, duration=1.0, ramp=0.0))
    assert report.errors == {"ConnectionRefusedError": 2}
    assert report.completed == 0
    assert report.replies_expected == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="protocol"):
        asyncio.run(run_load("ws://127.0.0.1:9/", "sip", 1))
    with pytest.raises(ValueError, match="calls"):
        asyncio.run(run_load("ws://127.0.0.1:9/", "twilio", 0))
    with pytest.raises(ValueError, match="ramp"):
        asyncio.run(run_load("ws://127.0.0.1:9/", "twilio", 1, ramp=-1))


def test_process_tree_cpu_counts_the_children() -> None:
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        best = 0.0
        while parent.poll() is None and time.monotonic() < deadline:
            best = max(best, process_tree_cpu(parent.pid))
            time.sleep(0.05)
        # the child's spin is counted while it runs; the parent itself mostly waits
        assert best >= 0.4
    finally:
        parent.wait(10)
    with pytest.raises(ProcessLookupError):
        process_tree_cpu(parent.pid)


def test_cli_loadtest_against_voxwire_serve() -> None:
    with serving("--protocol", "vonage", "--echo", "--port", "0") as served:
        url, server = served.url, served.process
        command = [sys.executable, "-m", "voxwire", "loadtest", url, "--protocol", "vonage"]
        result = subprocess.run(
            [
                *command,
                "--calls",
                "3",
                "--duration",
                "4",
                "--ramp",
                "0.3",
                "--server-pid",
                str(server.pid),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # no progress display under --json
        out: dict[str, Any] = json.loads(result.stdout)
        assert out["calls_completed"] == 3
        assert out["replies_missed"] == 0
        assert out["reply_latency_ms"]["p50"] > 0
        assert out["clear_latency_ms"]["n"] >= 3
        # a separate server process: its CPU is its own, a small positive share per call
        assert 0 < out["server"]["cpu_per_call"] < 1
        text = subprocess.run(
            [*command, "--calls", "1", "--duration", "1", "--ramp", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert text.returncode == 0, text.stderr
        assert "reply latency:" in text.stdout
        assert "1 ended (0 failed)" in text.stderr
