"""The offline voice stack end to end: per-stage turn latency and recognition accuracy of
``voxwire demo``'s conversation, over one or more runs.

    python bench/demo_latency.py --runs 3 [--protocol vonage]

Each run is a whole demo call (about 50 s of real time): the Harbor Dental agent on
pocketsphinx, the rules model and espeak-ng, called by the simulated phone. For every
caller turn it prints the median (and worst) time after the end of the caller's speech
at which each stage was reached, and the recogniser's word accuracy on what the caller
said (1 - word error rate, by edit distance over lower-cased words).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys

from voxwire.agents.demo import DemoReport, run_demo
from voxwire.sim.speech import word_errors
from voxwire.voice.metrics import STAGES

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped."""
    return _WORD.findall(text.lower())


def word_accuracy(pairs: list[tuple[str, str]]) -> float:
    """1 - WER over (said, recognised) pairs."""
    errors = sum(word_errors(words(s), words(h)) for s, h in pairs)
    total = sum(len(words(s)) for s, _ in pairs)
    return 1.0 - errors / total if total else 0.0


def table(reports: list[DemoReport]) -> str:
    """The per-stage latency table and the accuracy line."""
    delays: dict[str, list[float]] = {name: [] for name in STAGES[1:]}
    pairs: list[tuple[str, str]] = []
    for report in reports:
        for turn in report.turns:
            if not turn.said or turn.metrics is None:
                continue
            pairs.append((turn.said, turn.stt))
            for name, value in turn.metrics.stage_delays().items():
                if name in delays and value is not None:
                    delays[name].append(value * 1000)
    lines = [
        f"voxwire demo on {reports[0].protocol}, {len(reports)} run(s), {len(pairs)} caller turns",
        "",
        "| stage | median ms | worst ms |",
        "| --- | ---: | ---: |",
    ]
    for name, values in delays.items():
        if values:
            lines.append(f"| {name} | {statistics.median(values):.0f} | {max(values):.0f} |")
    lines.append("")
    lines.append(f"pocketsphinx word accuracy on the caller's turns: {word_accuracy(pairs):.3f}")
    booked = sum(bool(r.bookings) for r in reports)
    hung = sum(r.hung_up for r in reports)
    lines.append(f"runs with the booking in SQLite: {booked}/{len(reports)}; hung up: {hung}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--protocol", default="vonage")
    args = parser.parse_args(argv)
    reports = [asyncio.run(run_demo(args.protocol)) for _ in range(args.runs)]
    print(table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
