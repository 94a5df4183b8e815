"""``voxwire serve`` as a subprocess of a test: started, its URL read from the line it
prints, stopped (SIGTERM) when the block ends, with what it wrote kept for the test (read
as it comes, so a talkative server never blocks on a full pipe)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


@dataclass
class Served:
    """A running ``voxwire serve``: its process and the URL it serves."""

    process: subprocess.Popen[str]
    url: str
    _out: list[str] = field(default_factory=list)
    _err: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def stdout(self) -> str:
        """What the server wrote to stdout so far (all of it once the block has ended)."""
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        """What the server wrote to stderr so far (all of it once the block has ended)."""
        return "".join(self._err)


def _drain(stream: IO[str], into: list[str]) -> None:
    into.extend(stream)  # line by line, until the server closes it


@contextlib.contextmanager
def serving(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> Iterator[Served]:
    """Run ``voxwire serve ARGS`` while the block runs; SIGTERM it at the end and wait up
    to ``timeout`` seconds (then kill it). Raises AssertionError, with the server's
    stderr, when it does not print the line naming its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "voxwire", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    served = Served(process, "")
    readers = [threading.Thread(target=_drain, args=(process.stderr, served._err), daemon=True)]
    readers[0].start()
    try:
        line = process.stdout.readline()
        served._out.append(line)
        if " on " not in line:
            process.kill()
            process.wait(timeout)
            readers[0].join(timeout)
            raise AssertionError(f"voxwire serve did not start: {line!r}\n{served.stderr}")
        served.url = line.split(" on ", 1)[1].split()[0]
        readers.append(
            threading.Thread(target=_drain, args=(process.stdout, served._out), daemon=True)
        )
        readers[1].start()
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(timeout)
        process.stdout.close()
        process.stderr.close()
