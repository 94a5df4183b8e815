"""Side-by-side microbenchmarks behind ``voxwire bench``.

Each module here exposes ``run(quick: bool = False) -> list[Table]``: it checks that every
implementation it times gives the right output, then times them interleaved in the same
run on fresh data, and reports ratios against the peer a user would otherwise pick.
Peers that are not installed are skipped with a note. The files in the repository's
``bench/`` folder drive the same code through pytest-benchmark and plain scripts.
"""

from __future__ import annotations

BENCHMARKS: dict[str, str] = {
    "g711": "voxwire.benchmarks.g711",
    "resample": "voxwire.benchmarks.resample",
    "vad": "voxwire.benchmarks.vad",
    "plc": "voxwire.benchmarks.plc",
    "jitter": "voxwire.benchmarks.jitter",
    "media": "voxwire.benchmarks.media_path",
    "agc": "voxwire.benchmarks.agc",
}
"""Benchmark name -> module, in the order ``voxwire bench`` runs them."""

__all__ = ["BENCHMARKS"]
