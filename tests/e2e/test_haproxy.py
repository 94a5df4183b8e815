"""A fleet on one machine: Debian's HAProxy in front of three ``voxwire serve`` workers on
127.0.0.2-4 (``balance leastconn``, ``option httpchk GET /ready``, ``agent-check``,
``weight 100``), all started and stopped by the test. Calls spread over the workers;
draining one in the middle of the load keeps every call it has and sends new calls to the
others. Skipped without haproxy (``apt-get install haproxy``)."""

from __future__ import annotations

import asyncio
import os
import shutil
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
pytest.importorskip("prometheus_client", reason="the workers' call counts come from /metrics")
from prometheus_client.parser import text_string_to_metric_families

from voxwire.sim.load import LoadReport, run_load

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

CONFIG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
frontend media
    bind 127.0.0.1:{front}
    default_backend workers
backend workers
    balance leastconn
    option httpchk GET /ready
    http-check expect status 200
    default-server check inter 250ms fall 1 rise 1 agent-check agent-inter 250ms weight 100
{servers}
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


def metric(host: str, port: int, name: str) -> float:
    """A worker's metric ``name``, summed over its labels."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    body = data.decode().partition("\r\n\r\n")[2]
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[str]], int]]:
    port, agent = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxwire",
                "serve",
                "--protocol",
                "vonage",
                "--echo",
                "--host",
                host,
                "--port",
                str(port),
                "--agent-port",
                str(agent),
                "--max-calls",
                "10",
                "--metrics",
                "--drain-timeout",
                "30",
                "-q",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for host in HOSTS
    ]
    front = free_port()
    servers = "\n".join(
        f"    server w{i} {host}:{port} agent-port {agent}" for i, host in enumerate(HOSTS)
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(front=front, servers=servers))
    proxy: subprocess.Popen[str] | None = None
    try:
        for host in HOSTS:
            wait_listening(host, port)
            wait_listening(host, agent)
        assert HAPROXY is not None
        proxy = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_listening("127.0.0.1", front)
        time.sleep(1.0)  # the first health and agent checks pass
        yield f"ws://127.0.0.1:{front}/", workers, port
    finally:
        for process in [*workers, *([proxy] if proxy else [])]:
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_calls_spread_and_a_drained_worker_keeps_its_calls(
    fleet: tuple[str, list[subprocess.Popen[str]], int],
) -> None:
    url, workers, port = fleet

    async def scrape(hosts: tuple[str, ...], name: str) -> list[float]:
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(None, metric, h, port, name) for h in hosts]

    async def main() -> tuple[LoadReport, LoadReport, list[float], list[float]]:
        first = asyncio.create_task(
            run_load(url, "vonage", 6, duration=6.0, ramp=0.6, barge_every=0)
        )
        await asyncio.sleep(2.5)  # every call up, its first turn under way
        active = await scrape(HOSTS, "voxwire_active_calls")
        workers[1].send_signal(signal.SIGTERM)
        await asyncio.sleep(1.5)  # haproxy sees the agent's "drain" and /ready 503
        second = await run_load(url, "vonage", 3, duration=1.0, ramp=0.3, barge_every=0)
        report = await first
        served = await scrape((HOSTS[0], HOSTS[2]), "voxwire_calls_total")
        return report, second, active, served

    first, second, active, served = asyncio.run(main())
    # leastconn spread the six calls over the three workers
    assert active == [2, 2, 2]
    # the drained worker's calls ran to their end, as did everyone else's
    assert first.completed == 6, first.summary()
    assert first.replies_missed == 0
    assert first.errors == {}
    # the new calls went to the two others
    assert second.completed == 3, second.summary()
    out, err = workers[1].communicate(timeout=30)
    assert workers[1].returncode == 0, err
    # the drained worker took none of the three later calls: the others served 2 + 2 + 3
    assert sum(served) == 7
    assert "stopped" in out
