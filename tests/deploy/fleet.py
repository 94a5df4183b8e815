"""Helpers of the deployment tests: free ports, a real ``voxwire serve`` process, plain
HTTP requests and metric scrapes over sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(host: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


def http_get(host: str, port: int, path: str) -> tuple[int, str]:
    """(status, body) of ``GET path``."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def metrics(host: str, port: int) -> dict[str, float]:
    """A server's ``GET /metrics``, each sample name summed over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(host, port, "/metrics")
    assert status == 200, body
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def agent_reply(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=5) as s:
        return s.recv(100).decode()


def option(args: Sequence[str], name: str) -> str:
    """The value of ``--name VALUE`` in ``args``."""
    return args[list(args).index(name) + 1]


def replaced(args: Sequence[str], values: dict[str, str]) -> list[str]:
    """``args`` with the values of the options in ``values`` replaced."""
    out = list(args)
    for name, value in values.items():
        out[out.index(name) + 1] = value
    return out


def start_serve(args: Sequence[str]) -> subprocess.Popen[str]:
    """``voxwire serve ARGS`` in a process of its own (the test ends it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "voxwire", "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Kill ``process`` if it still runs; its output."""
    if process.poll() is None:
        process.kill()
    return process.communicate()
