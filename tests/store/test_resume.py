"""Conversations outlive a worker: two real ``voxwire serve`` processes share a store
(a SQLite file, or a redis-server the fixture starts); a simulated phone talks to the
first, the first is killed with SIGKILL in the middle of the call, the phone re-opens
the same call's stream on the second, and the second answers from the history the
first left. Both servers write call records, with a retention that removes an old row
when they start. The same with ``voxwire serve --workers 2``: the worker holding the call
is killed and the call's new stream lands on a worker the supervisor still runs."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from voxwire.sim import Turn, place_dialog, synthesize
from voxwire.store import CallRecord, CallRecords, ConversationStore, open_store

ROOT = Path(__file__).resolve().parents[2]
CALL = "5e1f0c2a-0000-4000-8000-00000000beef"
KEY = "twilio:CA" + CALL.replace("-", "")
DAY = 86400.0


class Server:
    """A ``voxwire serve`` process running the remembering agent; its URL from the
    ready line, its log in a file."""

    def __init__(self, log: Path, says: str, *options: str) -> None:
        env = {
            **os.environ,
            # the repository root for the test agent (tests.store...); voxwire itself is
            # whatever this interpreter imports (the source tree or an installed wheel)
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
            ),
            "RESUME_AGENT_SAYS": says,
        }
        self.log = log
        with log.open("w") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "voxwire",
                    "serve",
                    "--protocol",
                    "twilio",
                    "--agent",
                    "tests.store.resume_agent:build",
                    "--port",
                    "0",
                    *options,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        line = self.process.stdout.readline() if ready else ""
        if " on " not in line:
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r}\n{log.read_text()}")
        self.url = line.split(" on ", 1)[1].split()[0]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def said(text: str, seed: int = 1) -> np.ndarray:
    return synthesize(text, 8000, seed=seed)


async def until(check: object, timeout: float = 20.0) -> None:
    """Poll the coroutine function ``check`` until it returns true."""
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(0.1)


def old_record(records: Path) -> None:
    """A record of a call that ended 40 days ago (the servers keep 30)."""

    async def main() -> None:
        clock = time.time() - 40 * DAY
        old = CallRecords(records, retention_days=365, clock=lambda: clock)
        await old.add(CallRecord("CAold", "MZold", "twilio", clock - 60, clock, "caller_hung_up"))
        await old.aclose()

    asyncio.run(main())


def run_failover(tmp_path: Path, servers: list[Server], store_url: str) -> None:
    records = tmp_path / "calls.db"
    old_record(records)
    options = ["--store", store_url, "--records", str(records), "--records-retention-days", "30"]
    first = Server(tmp_path / "a.log", "my name is ada|i would like a table for two", *options)
    servers.append(first)
    second = Server(tmp_path / "b.log", "what is my name", *options)
    servers.append(second)

    async def main() -> None:
        store: ConversationStore = open_store(store_url)

        async def stored_turns(n: int) -> bool:
            found = await store.load(KEY)
            return found is not None and found.turns >= n

        try:
            # the first stream: two turns, then the worker dies with the call up
            talk = asyncio.ensure_future(
                place_dialog(
                    first.url,
                    "twilio",
                    [Turn(said("my name is ada"), "name"), Turn(said("a table for two", 2))],
                    call_id=CALL,
                    tail=60.0,
                )
            )
            await until(lambda: stored_turns(2))
            first.kill()
            report = await asyncio.wait_for(talk, 10)
            assert [t.reply_latency is not None for t in report.turns] == [True, True]
            before = await store.load(KEY)
            assert before is not None
            assert [m.content for m in before.history.messages] == [
                "my name is ada",
                "Nice to meet you, Ada.",
                "i would like a table for two",
                "Noted, that makes 2 things you told me.",
            ]
            # the provider re-opens the call's stream; it lands on the other worker
            talk = asyncio.ensure_future(
                place_dialog(
                    second.url,
                    "twilio",
                    [Turn(said("what is my name"), "ask")],
                    call_id=CALL,
                    tail=2.0,
                )
            )
            await until(lambda: stored_turns(3))
            after = await store.load(KEY)
            assert after is not None
            assert after.connections == 2
            assert [m.content for m in after.history.messages] == [
                *[m.content for m in before.history.messages],
                "what is my name",
                "Your name is Ada.",
            ]
            report = await asyncio.wait_for(talk, 20)
            assert report.turns[0].reply_latency is not None, report.summary()

            # the caller hung up: the conversation is forgotten
            async def forgotten() -> bool:
                return await store.load(KEY) is None

            await until(forgotten)
        finally:
            await store.aclose()

    asyncio.run(main())
    second.stop()
    rows = CallRecords(records).query("SELECT * FROM calls ORDER BY id")
    # the old row went at start; the killed worker wrote nothing; the second wrote one
    assert [r["call_id"] for r in rows] == ["CA" + CALL.replace("-", "")]
    (row,) = rows
    assert row["outcome"] == "caller_hung_up"
    assert (row["resumed"], row["connection"], row["turns"]) == (1, 2, 1)
    assert '"heard_text": "Your name is Ada."' in row["turn_metrics"]
    assert 0 < row["duration_s"] < 30
    assert '"mos"' in row["quality"]


def test_a_killed_workers_call_resumes_on_another_with_sqlite(
    tmp_path: Path, servers: list[Server]
) -> None:
    run_failover(tmp_path, servers, f"sqlite://{tmp_path}/state.db")


def test_a_killed_workers_call_resumes_on_another_with_redis(
    tmp_path: Path, servers: list[Server], redis_server: object
) -> None:
    pytest.importorskip("redis", reason="the Redis store needs the redis package")
    run_failover(tmp_path, servers, redis_server.url)  # type: ignore[attr-defined]


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out.update(int(c) for c in (task / "children").read_text().split())
    return out


def holding(workers: set[int], port: int) -> set[int]:
    """The workers with an established connection on the server's ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # ESTABLISHED
                    inodes.add(fields[9])
    found: set[int] = set()
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.add(pid)
    return found


def test_a_killed_workers_call_resumes_under_the_same_supervisor(
    tmp_path: Path, servers: list[Server]
) -> None:
    store_url = f"sqlite://{tmp_path}/state.db"
    # every worker reads the same script: only the count in the reply tells a resumed
    # history ("3 things") from a fresh one ("1 thing")
    supervisor = Server(
        tmp_path / "w.log", "a table please|for two|at eight", "--workers", "2",
        "--store", store_url,
    )  # fmt: skip
    servers.append(supervisor)
    port = int(supervisor.url.rsplit(":", 1)[1].split("/")[0])
    workers = children(supervisor.process.pid)
    assert len(workers) == 2

    async def main() -> None:
        store: ConversationStore = open_store(store_url)

        async def stored_turns(n: int) -> bool:
            found = await store.load(KEY)
            return found is not None and found.turns >= n

        try:
            talk = asyncio.ensure_future(
                place_dialog(
                    supervisor.url,
                    "twilio",
                    [Turn(said("a table please")), Turn(said("for two", 2))],
                    call_id=CALL,
                    tail=60.0,
                )
            )
            await until(lambda: stored_turns(2))
            (victim,) = holding(workers, port)
            os.kill(victim, signal.SIGKILL)
            await asyncio.wait_for(talk, 10)
            talk = asyncio.ensure_future(
                place_dialog(
                    supervisor.url,
                    "twilio",
                    [Turn(said("a table please"))],
                    call_id=CALL,
                    tail=2.0,
                )
            )
            await until(lambda: stored_turns(3))
            (server,) = holding(children(supervisor.process.pid), port)
            assert server != victim
            after = await store.load(KEY)
            assert after is not None
            assert [m.content for m in after.history.messages if m.role == "assistant"] == [
                "Noted, that makes 1 thing you told me.",
                "Noted, that makes 2 things you told me.",
                "Noted, that makes 3 things you told me.",
            ]
            report = await asyncio.wait_for(talk, 20)
            assert report.turns[0].reply_latency is not None, report.summary()
        finally:
            await store.aclose()

    asyncio.run(main())
    supervisor.stop()
    assert "exited with -9" in (tmp_path / "w.log").read_text()
