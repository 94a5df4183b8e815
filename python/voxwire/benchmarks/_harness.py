"""Timing and reporting helpers shared by the benchmarks.

Timing follows three rules. Implementations are timed interleaved, batch by batch in a
rotating order, so drift in clock speed or load hits all of them alike. Every call gets
input it has not seen recently (a pool of distinct buffers, cycled), so branch predictors
and caches cannot learn one buffer. Results are per-call times from batches, summarised
by median and high percentiles, and reported as ratios.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Impl",
    "Table",
    "environment_note",
    "fmt_ratio",
    "time_interleaved",
]


@dataclass
class Table:
    """A result table: printed by ``voxwire bench``, or dumped as JSON."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        """Return the table as aligned plain text, title first and notes last."""
        cells = [self.columns, *self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]

        def line(row: Sequence[str]) -> str:
            first = row[0].ljust(widths[0])
            rest = (cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        out = [self.title, line(self.columns), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        out += [f"  {note}" for note in self.notes]
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        """Return the table as JSON-ready data."""
        return {
            "title": self.title,
            "columns": self.columns,
            "rows": self.rows,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Impl:
    """One implementation to time: ``fn(item, *args)`` for each item of the input pool."""

    name: str
    fn: Callable[..., object]
    args: tuple[object, ...] = ()


def _run_batch(impl: Impl, items: Sequence[object]) -> int:
    fn = impl.fn
    args = impl.args
    # Specialised loops keep the harness's own per-call cost the same for every
    # implementation and as small as Python allows.
    if not args:
        t0 = time.perf_counter_ns()
        for x in items:
            fn(x)
        return time.perf_counter_ns() - t0
    if len(args) == 1:
        (a,) = args
        t0 = time.perf_counter_ns()
        for x in items:
            fn(x, a)
        return time.perf_counter_ns() - t0
    t0 = time.perf_counter_ns()
    for x in items:
        fn(x, *args)
    return time.perf_counter_ns() - t0


def time_interleaved(
    impls: Sequence[Impl], pool: Sequence[object], *, batch: int, rounds: int
) -> dict[str, npt.NDArray[np.float64]]:
    """Time each implementation over the pool; return per-call nanoseconds per batch.

    Each round times one batch of ``batch`` consecutive pool items per implementation, in
    an order that rotates every round; the pool position advances after every batch so no
    implementation sees the same items twice in a row.
    """
    if not pool:
        raise ValueError("time_interleaved: the input pool is empty")
    for impl in impls:  # warm up: first calls pay for imports, allocator growth, dispatch
        _run_batch(impl, pool[: min(batch, len(pool))])
    per_call: dict[str, list[float]] = {impl.name: [] for impl in impls}
    pos = 0
    n = len(pool)
    for r in range(rounds):
        order = list(impls[r % len(impls) :]) + list(impls[: r % len(impls)])
        for impl in order:
            if pos + batch > n:
                pos = 0
            items = pool[pos : pos + batch]
            pos += batch
            per_call[impl.name].append(_run_batch(impl, items) / len(items))
    return {name: np.asarray(v, dtype=np.float64) for name, v in per_call.items()}


def fmt_ratio(x: float) -> str:
    """Format a ratio for a table cell."""
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def environment_note() -> str:
    """One line saying where the figures were measured."""
    return (
        f"measured on {platform.machine()} {platform.processor() or ''}".rstrip()
        + f", Python {platform.python_version()}, numpy {np.__version__}"
    )
