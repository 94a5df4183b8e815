"""The Twilio echo server's cost per call for each lever, interleaved in one run.

python bench/echo_levers.py --harness ../shared/anchors/pipecat_load [--ns 160,320,500]
    [--levers asyncio,uvloop] [--rounds 1] [--duration 30] [--warmup 6] [--outdir DIR]
    [--baseline CHECKOUT]

For every round, every N and every lever (in that order, so the levers are interleaved and a
neighbour's load on a shared machine falls on all of them alike) this starts a fresh
``voxwire serve --protocol twilio --echo`` pinned to CPU 1, runs the shared load harness's
``load.py`` pinned to CPU 0 against it (N simulated Twilio callers, one media message every
20 ms each), and stops the server. The harness measures the server's CPU time (psutil on its
pid), missed replies, the outbound message interval, reply latency and its own CPU and send
lateness; the table prints them per lever. Needs psutil and numpy for the harness, uvloop
for the uvloop levers, picows for the picows ones, and ``taskset``.

``--baseline CHECKOUT`` adds a row per N for another voxwire checkout (its ``python/``
folder first on ``PYTHONPATH``, its native module built and copied in; on asyncio's loop,
without ``--loop``, which older checkouts do not take), interleaved with the levers: the
way to tell a regression from a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEVERS: dict[str, list[str]] = {
    "asyncio": ["--loop", "asyncio"],
    "uvloop": ["--loop", "uvloop"],
    "picows": ["--ws", "picows"],
    "picows+uvloop": ["--ws", "picows", "--loop", "uvloop"],
}
PORT = 8767


def _wait_port(port: int, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


BASELINE = "baseline"


def run_one(lever: str, n: int, args: argparse.Namespace, out: Path) -> dict[str, object]:
    serve = [sys.executable, "-m", "voxwire", "serve", "--protocol", "twilio", "--echo"]
    serve += ["--host", "127.0.0.1", "--port", str(PORT), "-q"]
    env = dict(os.environ)
    if lever == BASELINE:
        package = str(args.baseline / "python")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
    else:
        serve += LEVERS[lever]
    with open(out / f"{lever}_n{n}.server.log", "w") as log:
        server = subprocess.Popen(
            ["taskset", "-c", "1", *serve], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            if not _wait_port(PORT):
                raise SystemExit(f"{lever}: the server did not open port {PORT}")
            time.sleep(1.0)
            result = out / f"{lever}_n{n}.json"
            load = ["taskset", "-c", "0", sys.executable, "-W", "ignore", "load.py"]
            load += ["--url", f"ws://127.0.0.1:{PORT}/ws", "--n", str(n)]
            load += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
            load += ["--server-pid", str(server.pid), "--label", lever, "--out", str(result)]
            done = subprocess.run(
                load,
                cwd=args.harness,
                capture_output=True,
                text=True,
                timeout=args.duration + args.warmup + 120,
            )
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"load.py failed for {lever} n={n}")
            loaded: dict[str, object] = json.loads(result.read_text())
            return loaded
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


COLUMNS = [
    ("lever", "label"),
    ("calls", "n"),
    ("core/call", "cpu_frac_per_call"),
    ("server cores", "server_cores_used"),
    ("missed", "replies_missed"),
    ("expected", "replies_expected"),
    ("out iv p99 ms", "out_interval_ms_p99"),
    ("reply p50 ms", "reply_latency_ms_p50"),
    ("generator cores", "client_cores_used"),
    ("send late p99 ms", "send_late_ms_p99"),
    ("behind", "behind_real_time"),
]


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    lines.extend("| " + " | ".join(str(row.get(k, "-")) for _, k in COLUMNS) + " |" for row in rows)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--harness", required=True, type=Path, help="the pipecat_load folder")
    ap.add_argument("--ns", default="160,320,500")
    ap.add_argument("--levers", default=",".join(LEVERS))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=6.0)
    ap.add_argument("--outdir", type=Path, default=None)
    ap.add_argument(
        "--baseline", type=Path, default=None, help="another voxwire checkout, run beside"
    )
    args = ap.parse_args()
    args.harness = args.harness.resolve()
    levers = args.levers.split(",")
    unknown = [lever for lever in levers if lever not in LEVERS]
    if unknown:
        ap.error(f"unknown lever(s) {unknown}; known: {list(LEVERS)}")
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not list((args.baseline / "python" / "voxwire").glob("_core*.so")):
            ap.error(f"{args.baseline}: no python/voxwire/_core*.so (build it and copy it in)")
        levers.insert(0, BASELINE)
    out = args.outdir or Path(tempfile.mkdtemp(prefix="echo_levers_"))
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for _ in range(args.rounds):
        for n in [int(x) for x in args.ns.split(",")]:
            for lever in levers:
                row = run_one(lever, n, args, out)
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    print(f"\nresults in {out} (server pinned to CPU 1, generator to CPU 0)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
