"""The voxwire command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from voxwire import __version__
from voxwire.benchmarks._harness import Impl, Table, time_interleaved
from voxwire.cli import main


def test_bench_g711_prints_its_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "g711"]) == 0
    out = capsys.readouterr().out
    assert "G.711, one 20 ms frame" in out
    assert "G.711, 1 s blocks" in out
    for op in ("mu-law encode", "mu-law decode", "A-law encode", "A-law decode"):
        assert out.count(op) == 2


def test_bench_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "g711", "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    assert [t["title"][:5] for t in tables] == ["G.711", "G.711"]
    for t in tables:
        assert all(len(row) == len(t["columns"]) for row in t["rows"])


def test_unknown_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--only", "nope"])
    assert exc.value.code == 2
    assert "unknown benchmark nope" in capsys.readouterr().err


def test_console_entry_point_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxwire", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"voxwire {__version__}"


def test_table_render_aligns_columns() -> None:
    table = Table("T", ["name", "value"], [["a", "1"], ["long name", "12345"]], ["note"])
    lines = table.render().splitlines()
    assert lines[0] == "T"
    assert lines[1] == "name       value"
    assert lines[3] == "a              1"
    assert lines[4] == "long name  12345"
    assert lines[5] == "  note"


def test_time_interleaved_visits_every_implementation() -> None:
    seen: dict[str, list[object]] = {"a": [], "b": []}
    impls = [Impl("a", seen["a"].append), Impl("b", lambda x, y: seen["b"].append((x, y)), (9,))]
    result = time_interleaved(impls, list(range(10)), batch=3, rounds=4)
    assert set(result) == {"a", "b"}
    assert all(len(v) == 4 and (v >= 0).all() for v in result.values())
    assert len(seen["a"]) == 3 + 4 * 3  # warm-up batch + rounds
    assert all(y == 9 for _, y in seen["b"])
    with pytest.raises(ValueError, match="empty"):
        time_interleaved(impls, [], batch=1, rounds=1)


def test_every_registered_benchmark_has_a_run_function() -> None:
    import importlib

    from voxwire.benchmarks import BENCHMARKS

    for name, module in BENCHMARKS.items():
        assert callable(importlib.import_module(module).run), name


def test_bench_plc_quick(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "plc"]) == 0
    out = capsys.readouterr().out
    assert "Packet-loss concealment" in out
    assert out.count("bursts of") == 4
