"""Fuzzing depth: every fuzz target, C++ and Python, to a million executions, in one run.

    python bench/fuzz_depth.py [--runs 1000000] [--jobs 2] [--only NAME ...] [--json]

The C++ targets (libFuzzer + ASan + UBSan, ``tests/fuzz/fuzz_*.cpp``) are built with the
``fuzz`` preset first when ``build/fuzz`` does not hold them (clang and
libclang-rt-14-dev); the Python ones (``tests/fuzz/fuzz_codecs.py``, ``fuzz_sip.py``,
``fuzz_twcc.py``: every media-stream codec end to end, the SIP stack, the RTCP transport
feedback) run under atheris (``pip install atheris``). Each target starts from an empty
corpus plus its seeds and runs until ``--runs`` executions; ``--jobs`` targets run at
once. A row reports the executions libFuzzer counted (``stat::number_of_executed_units``),
the wall time, the rate, the peak RSS it printed, the coverage reached and the findings:
libFuzzer stops at the first crash, leak, timeout or out-of-memory and leaves the input
as ``crash-*`` (or ``leak-*``, ``timeout-*``, ``oom-*``) in the target's work directory,
which the row names. The command exits 1 if any target found anything or fell short of ``--runs``.

CI runs every target for 30 s; this is the long run. Limits given to every target:
``-rss_limit_mb=2048`` (an input that makes a parser hold more is a finding) and
``-timeout=10`` (one input taking longer is a finding).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "fuzz" / "tests" / "fuzz"
PYTHON_TARGETS = ("fuzz_codecs", "fuzz_sip", "fuzz_twcc")
LIMITS = ("-rss_limit_mb=2048", "-timeout=10")


@dataclass
class Row:
    target: str
    kind: str
    executions: int
    seconds: float
    peak_rss_mb: int
    coverage: int
    findings: list[str]
    exit_code: int


def cpp_targets() -> list[Path]:
    """The built libFuzzer binaries, building them once if none are there."""
    found = sorted(p for p in BUILD.glob("fuzz_*") if p.is_file() and os.access(p, os.X_OK))
    if found:
        return found
    if shutil.which("clang++") is None:
        print("no clang++: the C++ targets are skipped (apt-get install clang libclang-rt-14-dev)")
        return []
    subprocess.run(["cmake", "--preset", "fuzz"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", "--preset", "fuzz"], cwd=ROOT, check=True)
    return sorted(p for p in BUILD.glob("fuzz_*") if p.is_file() and os.access(p, os.X_OK))


def run_target(name: str, command: list[str], runs: int, workdir: Path) -> Row:
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True)
    if name in PYTHON_TARGETS:
        from tests.fuzz import targets

        seeds = {
            "fuzz_codecs": targets.codec_seeds,
            "fuzz_sip": targets.sip_seeds,
            "fuzz_twcc": targets.twcc_seeds,
        }[name]()
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i:03}").write_bytes(seed)
    args = [*command, f"-runs={runs}", "-seed=1", "-print_final_stats=1", *LIMITS, str(corpus)]
    inherited = filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))
    paths = [str(ROOT), *map(os.path.abspath, inherited)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    start = time.perf_counter()
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    log = done.stdout + done.stderr
    (workdir / "log.txt").write_text(log)
    units = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    rss = re.findall(r"stat::peak_rss_mb:\s*(\d+)", log)
    cov = re.findall(r"\bcov: (\d+)", log)
    findings = sorted(
        str(p)
        for p in workdir.iterdir()
        if re.match(r"(crash|leak|timeout|oom|slow-unit)-", p.name)
    )
    return Row(
        target=name,
        kind="python" if name in PYTHON_TARGETS else "c++",
        executions=int(units[-1]) if units else 0,
        seconds=round(seconds, 1),
        peak_rss_mb=int(rss[-1]) if rss else 0,
        coverage=int(cov[-1]) if cov else 0,
        findings=findings,
        exit_code=done.returncode,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="targets by name (fuzz_rtp ...)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--workdir", type=Path, help="where logs and findings go (a temp dir)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.jobs < 1:
        parser.error("--runs and --jobs must be positive")
    sys.path.insert(0, str(ROOT))

    commands: dict[str, list[str]] = {p.name: [str(p)] for p in cpp_targets()}
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: the Python targets are skipped (pip install atheris)")
    else:
        for name in PYTHON_TARGETS:
            commands[name] = [sys.executable, str(ROOT / "tests" / "fuzz" / f"{name}.py")]
    if args.only:
        unknown = set(args.only) - set(commands)
        if unknown:
            parser.error(f"unknown targets {sorted(unknown)}; have {sorted(commands)}")
        commands = {k: v for k, v in commands.items() if k in args.only}
    if not commands:
        print("no fuzz target to run")
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="voxwire-fuzz-depth-"))
    print(
        f"{len(commands)} targets x {args.runs} executions, {args.jobs} at once; work in {workdir}"
    )
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_target, name, cmd, args.runs, workdir / name)
            for name, cmd in commands.items()
        ]
        rows = [f.result() for f in futures]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(
            f"{'target':18} {'kind':6} {'executions':>11} {'s':>7} {'exec/s':>7} "
            f"{'peak RSS MB':>11} {'cov':>6}  findings"
        )
        for r in rows:
            rate = r.executions / r.seconds if r.seconds else 0.0
            print(
                f"{r.target:18} {r.kind:6} {r.executions:>11} {r.seconds:>7.1f} {rate:>7.0f} "
                f"{r.peak_rss_mb:>11} {r.coverage:>6}  {', '.join(r.findings) or 'none'}"
            )
    bad = [r for r in rows if r.findings or r.exit_code != 0 or r.executions < args.runs]
    for r in bad:
        print(
            f"{r.target}: exit {r.exit_code}, {r.executions} executions; log {workdir / r.target}"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
