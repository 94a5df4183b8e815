"""bench/demo_latency.py scores recognition as 1 - WER over words."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from voxwire.sim.speech import word_errors

pytest.importorskip("pocketsphinx", reason="the bench imports the demo agent")


def load() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "demo_latency.py"
    spec = importlib.util.spec_from_file_location("demo_latency_bench", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_word_accuracy_is_one_minus_the_word_error_rate() -> None:
    bench = load()
    assert word_errors(["a", "b", "c"], ["a", "c"]) == 1
    assert word_errors(["a"], ["b", "c"]) == 2
    assert word_errors([], ["b"]) == 1
    assert bench.word_accuracy([("What are your hours?", "what are your hours")]) == 1.0
    # one substitution and one deletion in 4 + 2 words
    pairs = [("What are your hours?", "what are you hours"), ("Thank you.", "you")]
    assert bench.word_accuracy(pairs) == pytest.approx(1 - 2 / 6)
    assert bench.word_accuracy([]) == 0.0
