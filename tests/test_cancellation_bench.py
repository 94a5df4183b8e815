"""bench/cancellation.py runs: every client's close is seen by its fake server and nothing
is sent after it (each round checks that itself; no timing is asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the HTTP clients need aiohttp")
pytest.importorskip("websockets", reason="the WebSocket clients need websockets")

ROOT = Path(__file__).resolve().parent.parent


def test_the_cancellation_bench_measures_every_client() -> None:
    import voxwire

    env = dict(os.environ, PYTHONPATH=str(Path(voxwire.__file__).resolve().parent.parent))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cancellation.py"), "--rounds", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: a round over 50 ms (a loaded machine)
    rows = json.loads(done.stdout)
    assert [r["client"].split(": ")[1] for r in rows] == [
        "OpenAIChatModel",
        "AnthropicModel",
        "DeepgramStt",
        "OpenAITranscriptionStt",
        "OpenAISpeechTts",
        "ElevenLabsTts",
        "CartesiaTts",
    ]
    for row in rows:
        assert row["rounds"] == 1
        assert 0 <= row["median_ms"] < 2000
