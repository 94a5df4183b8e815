"""Measure the real-time error of voxwire's process pacer on this machine.

python bench/pacing_error.py [--seconds 5] [--streams 1,50,200]

For every frame the pacer hands out, the error is the wall-clock send time minus the
time the schedule says it was due (``t0 + (k + 1) * 20 ms - lead``). The table gives its
median, 99th percentile and maximum per stream count, and the drift: how far the last
frame of each stream is from its due time after the whole run. Exact pacing (no drift,
no bursts) is tested on a virtual clock in tests/protocols/test_pacing.py; this script
shows what the asyncio event loop adds.
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from voxwire.aio.pacer import Pacer
from voxwire.pacing import PacedStream

FRAME = 0.02
LEAD = 0.06


async def measure(streams: int, seconds: float) -> tuple[np.ndarray, float]:
    loop = asyncio.get_running_loop()
    pacer = Pacer(lead=LEAD)
    sends: list[list[float]] = [[] for _ in range(streams)]
    starts: list[float] = []
    frames = int(seconds / FRAME)
    for i in range(streams):
        stream = PacedStream(8000, name=str(i))
        starts.append(loop.time())
        pacer.open(stream, lambda item, i=i: sends[i].append(loop.time()))
        stream.push(np.zeros(160 * frames, np.int16))
        await asyncio.sleep(FRAME / max(streams, 1))  # stagger the calls
    await asyncio.sleep(seconds + 0.2)
    await pacer.aclose()
    errors = []
    drift = 0.0
    for times in sends:
        t0 = times[0]  # the first frame starts the stream's epoch
        due = t0 + (np.arange(len(times)) + 1) * FRAME - LEAD
        due[: int(LEAD / FRAME)] = t0
        err = np.asarray(times) - due
        errors.append(err)
        drift = max(drift, abs(err[-1]))
    return np.concatenate(errors), drift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--streams", default="1,50,200")
    args = parser.parse_args()
    print(f"{'streams':>8} {'frames':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'drift ms':>9}")
    for n in (int(x) for x in args.streams.split(",")):
        err, drift = asyncio.run(measure(n, args.seconds))
        p50, p99 = np.percentile(err, [50, 99]) * 1000
        print(
            f"{n:>8} {len(err):>8} {p50:>8.2f} {p99:>8.2f} {err.max() * 1000:>8.2f} "
            f"{drift * 1000:>9.2f}"
        )


if __name__ == "__main__":
    main()
