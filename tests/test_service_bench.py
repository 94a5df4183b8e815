"""bench/service_clients.py runs: its fake server answers every voxwire client, whose
output is checked before it is timed (no timing is asserted here)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the bench's fake server is aiohttp")
pytest.importorskip("websockets", reason="the bench's fake server is websockets")

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("service_clients", BENCH / "service_clients.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["service_clients"] = module
    spec.loader.exec_module(module)
    return module


sc = _load()


def test_the_bench_measures_every_voxwire_client_in_quick_mode() -> None:
    rows = asyncio.run(asyncio.wait_for(sc.run(quick=True, sdks=False), 60))
    assert [r["service"] for r in rows] == [p[0].service for p in sc.PAIRS]
    for row in rows:
        assert row["voxwire_us"] > 0
        assert row["voxwire_first_ms"] > 0
        assert "sdk_us" not in row
    table = sc.render(rows, 50, 1)
    assert "| LLM: OpenAI Chat Completions | token | - |" in table


def test_a_wrong_stream_fails_the_check() -> None:
    class Short(sc.OpenAIChat):  # type: ignore[misc, name-defined]
        async def stream(self, n, first):  # type: ignore[no-untyped-def]
            return sc._words(n - 1)

    with pytest.raises(AssertionError, match="wrong output"):
        asyncio.run(sc._checked(Short("http://127.0.0.1:9", "ws://127.0.0.1:9"), 5))
