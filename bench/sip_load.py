"""CPU per concurrent SIP + RTP call, side by side with the WebSocket path, in one run.

python bench/sip_load.py [--calls 100] [--window 20] [--server-cpu 1] [--generator-cpu 0]

The SIP side: ``voxwire serve --protocol sip --echo`` (pinned to ``--server-cpu``) under
SIPp (pinned to ``--generator-cpu``) placing ``--calls`` calls with bench/scenarios/
sip_load.xml, written for voxwire: INVITE with a PCMU offer, ACK, espeak-ng speech and
silence streamed as RTP in a loop (SIPp's rtp_stream, 50 packets a second a call) for the
call's life, BYE. The WebSocket side: ``voxwire serve --protocol twilio --echo`` under
``voxwire loadtest`` (the simulated Twilio phone, 50 media messages a second a call) with
the same number of calls. Both servers run the echo agent at 16 kHz, and both are measured
the same way: the server process's user + system CPU time (``/proc``) over a window
in which every call is up, divided by the window and by the calls (a fraction of one
core per call). SIPp's own statistics give the failed calls (the goal: none).
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
from pathlib import Path

import numpy as np

from voxwire.g711 import encode_ulaw
from voxwire.sim import synthesize
from voxwire.sim.load import process_tree_cpu

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "sip_load.xml"


def _serve(args: list[str], cpu: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``voxwire serve ARGS`` on CPU ``cpu``; (process, the address it printed)."""
    command = [sys.executable, "-m", "voxwire", "serve", *args, "-q"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if " on " not in line:
        process.kill()
        raise RuntimeError(f"voxwire serve did not start: {line!r}")
    return process, line.split(" on ", 1)[1].split()[0]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _window_cpu(pid: int, start: float, seconds: float) -> float:
    """Cores the process tree of ``pid`` used over ``seconds`` from ``start`` (monotonic)."""
    time.sleep(max(0.0, start - time.monotonic()))
    c0, t0 = process_tree_cpu(pid), time.monotonic()
    time.sleep(seconds)
    return (process_tree_cpu(pid) - c0) / (time.monotonic() - t0)


def sip_run(calls: int, window: float, server_cpu: int, generator_cpu: int) -> dict[str, float]:
    sipp = shutil.which("sipp")
    if sipp is None:
        raise RuntimeError("SIPp is not installed (Debian: apt-get install sip-tester)")
    rate = 20.0  # calls started a second
    ramp = calls / rate
    hold = ramp + window + 6.0  # every call is up through the window
    with tempfile.TemporaryDirectory() as work:
        words = synthesize("Hello, this is a load test of the SIP path.", 8000, seed=1)
        line = np.concatenate([words, np.zeros(16000 + (-len(words) % 160), np.int16)])
        (Path(work) / "caller.ulaw").write_bytes(encode_ulaw(line).tobytes())
        server, address = _serve(
            ["--protocol", "sip", "--echo", "--port", "0", "--rtp-ports", "30000-39999"],
            server_cpu,
        )
        try:
            host, port = re.sub(r"^sips?:", "", address).split("@")[-1].split(";")[0].split(":")
            command = [
                sipp, f"{host}:{port}", "-sf", str(SCENARIO), "-i", "127.0.0.1",
                "-mi", "127.0.0.1", "-mp", "20000", "-l", str(calls), "-m", str(calls),
                "-r", str(rate), "-d", str(round(hold * 1000)), "-nostdin",
                "-timeout", f"{round(hold + 60)}s", "-trace_stat", "-fd", "1",
                "-stf", str(Path(work) / "stats.csv"),
            ]  # fmt: skip
            if shutil.which("taskset"):
                command = ["taskset", "-c", str(generator_cpu), *command]
            begun = time.monotonic()
            sipp_proc = subprocess.Popen(
                command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
            )
            cores = _window_cpu(server.pid, begun + ramp + 3.0, window)
            sipp_proc.communicate(timeout=hold + 90)
            stats = (Path(work) / "stats.csv").read_text().splitlines()
            head, last = stats[0].split(";"), stats[-1].split(";")
            row = dict(zip(head, last, strict=False))
            failed = int(row.get("FailedCall(C)", "-1"))
            ok = int(row.get("SuccessfulCall(C)", "-1"))
        finally:
            _stop(server)
    return {
        "calls": calls,
        "cores": cores,
        "per_call": cores / calls,
        "successful": ok,
        "failed": failed,
        "sipp_exit": float(sipp_proc.returncode),
    }


def ws_run(calls: int, window: float, server_cpu: int, generator_cpu: int) -> dict[str, float]:
    server, url = _serve(["--protocol", "twilio", "--echo", "--port", "0"], server_cpu)
    try:
        ramp = 1.0
        duration = ramp + window + 6.0
        command = [
            sys.executable, "-m", "voxwire", "loadtest", url, "--protocol", "twilio",
            "--calls", str(calls), "--duration", str(duration), "--ramp", str(ramp),
            "--barge-every", "0", "--json",
        ]  # fmt: skip
        if shutil.which("taskset"):
            command = ["taskset", "-c", str(generator_cpu), *command]
        begun = time.monotonic()
        load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cores = _window_cpu(server.pid, begun + ramp + 3.0, window)
        out, _ = load.communicate(timeout=duration + 120)
        report = json.loads(out)
    finally:
        _stop(server)
    return {
        "calls": calls,
        "cores": cores,
        "per_call": cores / calls,
        "successful": report["calls_completed"],
        "failed": report["calls"] - report["calls_completed"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--generator-cpu", type=int, default=0)
    args = parser.parse_args(argv)
    sip = sip_run(args.calls, args.window, args.server_cpu, args.generator_cpu)
    ws = ws_run(args.calls, args.window, args.server_cpu, args.generator_cpu)
    command = " ".join(["python bench/sip_load.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"Echo calls on one core ({command}); window {args.window:g} s with every call up\n")
    print("| path | calls | server cores | core per call | calls per core | completed | failed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in (("SIP + RTP (SIPp)", sip), ("WebSocket, Twilio (voxwire loadtest)", ws)):
        print(
            f"| {name} | {r['calls']:.0f} | {r['cores']:.3f} | {r['per_call']:.4f} | "
            f"{1 / r['per_call']:.0f} | {r['successful']:.0f} | {r['failed']:.0f} |"
        )
    print(f"\nSIP / WebSocket CPU per call: {sip['per_call'] / ws['per_call']:.2f}x")
    if sip["sipp_exit"] != 0:
        print(f"SIPp exit status {sip['sipp_exit']:.0f}")
    return 0 if sip["failed"] == 0 and ws["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
