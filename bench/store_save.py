"""The cost of a conversation save and load, per backend: SQLite (WAL) and Redis.

    python bench/store_save.py [--saves 2000] [--turns 10]

Each row saves one call's conversation (``--turns`` turns of a user sentence and a
two-sentence reply, as the agent saves after every turn) ``--saves`` times under 50
rotating call keys, then loads each key, and reports the wall time per operation
(p50/p99, ms) and the JSON size. SQLite runs on a temporary file in WAL mode on the
store's own thread; Redis on a ``redis-server`` this script starts on a free loopback
port (the row is left out when Debian's redis-server or the ``redis`` package is
missing). The figures include asyncio's hand-off to the thread or the socket, which is
what a call's save costs the event loop's turn: one hop, not the disk's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from voxwire.store import ConversationStore, SqliteStore, StoredConversation, encode
from voxwire.voice.history import History


def conversation(turns: int) -> StoredConversation:
    history = History("You are the receptionist of a dental practice. Be brief.")
    for i in range(turns):
        history.add_user(f"I would like to move my appointment number {i} to next Tuesday.")
        history.add_assistant(
            "Of course, I can move it to Tuesday at ten in the morning. Shall I confirm it?"
        )
    return StoredConversation(history, turns=turns, protocol="twilio")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(store: ConversationStore, saves: int, turns: int) -> tuple[float, ...]:
    conv = conversation(turns)
    save_ms: list[float] = []
    for i in range(saves):
        began = time.perf_counter()
        await store.save(f"twilio:CA{i % 50}", conv)
        save_ms.append(1000 * (time.perf_counter() - began))
    load_ms: list[float] = []
    for i in range(50):
        began = time.perf_counter()
        loaded = await store.load(f"twilio:CA{i}")
        load_ms.append(1000 * (time.perf_counter() - began))
        assert loaded is not None
        assert loaded.history.to_dict() == conv.history.to_dict()
    await store.aclose()
    return (
        statistics.median(save_ms),
        percentile(save_ms, 0.99),
        statistics.median(load_ms),
        percentile(load_ms, 0.99),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    size = len(encode(conversation(args.turns))[0])
    print(f"{args.saves} saves of a {args.turns}-turn conversation ({size} bytes of JSON)")
    print(f"{'backend':<8} {'save p50':>9} {'save p99':>9} {'load p50':>9} {'load p99':>9}  (ms)")
    with tempfile.TemporaryDirectory() as folder:
        rows: list[tuple[str, tuple[float, ...]]] = []
        store = SqliteStore(Path(folder) / "state.db")
        rows.append(("sqlite", asyncio.run(measure(store, args.saves, args.turns))))
        binary = shutil.which("redis-server")
        try:
            from voxwire.store.redis_store import RedisStore
        except ImportError:
            binary = None
        if binary is not None:
            port = free_port()
            server = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
                stdout=subprocess.DEVNULL,
            )
            try:
                time.sleep(0.5)

                async def redis_row() -> tuple[float, ...]:
                    return await measure(
                        RedisStore(f"redis://127.0.0.1:{port}/0"), args.saves, args.turns
                    )

                rows.append(("redis", asyncio.run(redis_row())))
            finally:
                server.terminate()
                server.wait()
        for name, figures in rows:
            print(f"{name:<8} " + " ".join(f"{f:>9.3f}" for f in figures))


if __name__ == "__main__":
    main()
