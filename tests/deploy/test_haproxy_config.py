"""deploy/haproxy/haproxy.cfg, run by Debian's HAProxy in front of three real workers on
127.0.0.2-4, each started with the command its header gives: the file is used as shipped,
with only its addresses and ports replaced (and a stats socket added to read the servers'
states). Calls spread by ``leastconn``; a worker sent SIGTERM keeps its calls and gets no
new one; a worker killed with SIGKILL costs no new call (``redispatch``) and is marked
down. Skipped without haproxy (``apt-get install haproxy``)."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("espeakng_loader", reason="the callers' speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the servers and phones need websockets")
pytest.importorskip("prometheus_client", reason="the workers' call counts come from /metrics")

from tests.deploy.fleet import (
    DEPLOY,
    free_port,
    metrics,
    option,
    replaced,
    start_serve,
    stop,
    wait_listening,
)
from voxwire.sim.load import LoadReport, run_load

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"


def worker_args(text: str) -> list[str]:
    """The worker command of the configuration's header, after ``voxwire serve``."""
    header = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(header) if line.startswith("voxwire serve "))
    command = header[start]
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + " " + header[start]
    words = shlex.split(command)
    assert words[:2] == ["voxwire", "serve"]
    return words[2:]


def templated(text: str, front: int, port: int, agent: int, sock: Path) -> str:
    """The configuration with this machine's addresses and ports."""
    servers = "\n".join(f"    server w{i} {h}:{port}" for i, h in enumerate(HOSTS))
    out, n = re.subn(r"(?m)^    server .*\n?", "", text)
    assert n == 3, "three server lines"
    out, n = re.subn(r"(?m)^    bind :8080$", f"    bind 127.0.0.1:{front}", out)
    assert n == 1
    out, n = re.subn(
        r"(?m)^(    default-server .*)agent-port 8081", rf"\g<1>agent-port {agent}", out
    )
    assert n == 1
    out, n = re.subn(r"(?m)^global$", f"global\n    stats socket {sock} level admin", out)
    assert n == 1
    return out.rstrip("\n") + "\n" + servers + "\n"


def server_states(sock: Path) -> dict[str, str]:
    """The backend servers' status (UP, DOWN, DRAIN...) from the stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    servers = [r for r in rows if r["pxname"] == "voxwire" and r["svname"].startswith("w")]
    return {r["svname"]: r["status"] for r in servers}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[str]], int, Path]]:
    text = CONFIG.read_text()
    port, agent, front = free_port(), free_port(), free_port()
    args = worker_args(text)
    assert option(args, "--port") == "8080"
    assert option(args, "--agent-port") == "8081"
    sock = tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    config.write_text(templated(text, front, port, agent, sock))
    workers: list[subprocess.Popen[str]] = []
    proxy: subprocess.Popen[str] | None = None
    try:
        for h in HOSTS:
            ports = {"--host": h, "--port": str(port), "--agent-port": str(agent)}
            workers.append(start_serve([*replaced(args, ports), "-q"]))
        for h in HOSTS:
            wait_listening(h, port)
            wait_listening(h, agent)
        assert HAPROXY is not None
        checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        proxy = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_listening("127.0.0.1", front, timeout=15)
        except AssertionError:
            raise AssertionError(stop(proxy)[1]) from None
        deadline = time.monotonic() + 20
        while set(server_states(sock).values()) != {"UP"}:  # rise 2: two checks passed
            assert time.monotonic() < deadline, server_states(sock)
            time.sleep(0.2)
        yield f"ws://127.0.0.1:{front}/", workers, port, sock
    finally:
        for process in workers:
            stop(process)
        if proxy is not None:
            stop(proxy)


def test_the_shipped_haproxy_config_spreads_drains_and_fails_over(
    fleet: tuple[str, list[subprocess.Popen[str]], int, Path],
) -> None:
    url, workers, port, sock = fleet

    async def scrape(host: str, name: str) -> float:
        loop = asyncio.get_running_loop()
        return (await loop.run_in_executor(None, metrics, host, port)).get(name, 0.0)

    async def main() -> dict[str, object]:
        seen: dict[str, object] = {}
        first = asyncio.create_task(
            run_load(url, "twilio", 6, duration=7.0, ramp=0.6, barge_every=0)
        )
        await asyncio.sleep(2.5)  # every call up, its first turn under way
        seen["active"] = [await scrape(h, "voxwire_active_calls") for h in HOSTS]
        workers[1].send_signal(signal.SIGTERM)
        await asyncio.sleep(2.5)  # the agent's "drain" is seen (agent-inter 1s)
        seen["drained_state"] = server_states(sock)["w1"]
        seen["second"] = await run_load(url, "twilio", 3, duration=1.0, ramp=0.3, barge_every=0)
        seen["first"] = await first
        seen["served"] = [await scrape(h, "voxwire_calls_total") for h in (HOSTS[0], HOSTS[2])]
        # killed, not drained: the next calls are placed before any check has noticed
        before = await scrape(HOSTS[0], "voxwire_calls_total")
        workers[2].kill()
        seen["third"] = await run_load(url, "twilio", 4, duration=1.0, ramp=0.4, barge_every=0)
        seen["moved"] = await scrape(HOSTS[0], "voxwire_calls_total") - before
        await asyncio.sleep(3.0)  # fall 2 at inter 1s
        seen["states"] = server_states(sock)
        return seen

    seen = asyncio.run(main())
    # leastconn spread the six calls over the three workers
    assert seen["active"] == [2, 2, 2]
    assert str(seen["drained_state"]).startswith("DRAIN"), seen["drained_state"]
    first, second, third = seen["first"], seen["second"], seen["third"]
    assert isinstance(first, LoadReport)
    assert isinstance(second, LoadReport)
    assert isinstance(third, LoadReport)
    # the drained worker's calls ran to their end, as did everyone else's
    assert first.completed == 6, first.summary()
    assert first.replies_missed == 0
    assert first.errors == {}
    assert second.completed == 3, second.summary()
    assert workers[1].wait(timeout=30) == 0
    # it took none of the three later calls: the two others served 2 + 2 + 3
    assert sum(seen["served"]) == 7  # type: ignore[arg-type]
    # the killed worker's next calls went to the one left, none lost
    assert third.completed == 4, third.summary()
    assert seen["moved"] == 4
    states = seen["states"]
    assert isinstance(states, dict)
    assert states["w0"] == "UP"
    assert states["w1"].startswith("DOWN")  # drained and gone
    assert states["w2"].startswith("DOWN")
