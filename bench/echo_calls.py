"""Echo calls end to end on loopback: echo correlation, reply and clear latency per protocol.

python bench/echo_calls.py [--rounds 3] [--protocols twilio,vonage,...]

Each round runs one call per protocol, all at once, against an echo server of its own
(``voxwire.agents.server.serve_echo``) from the simulated caller (``voxwire.sim``): once
plainly, once talking over the reply 0.4 s after it began. The table gives, per
protocol, the worst echo correlation, and the median and worst reply latency (end of
the caller's speech to the reply playing) and clear latency (barge-in onset to the clear
reaching the phone). The goal for the clear is 100 ms. Needs websockets and
espeakng-loader (the test extra).
"""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from voxwire.agents.server import serve_echo
from voxwire.sim import PROVIDERS, CallPlan, CallReport, place_call, synthesize

SAY = "Testing the voxwire echo line."
BARGE = "Sorry to interrupt you there."


async def one_call(protocol: str, barge_in: bool) -> CallReport:
    stop = asyncio.Event()
    urls: list[str] = []
    server = asyncio.create_task(serve_echo(protocol, "127.0.0.1", 0, stop=stop, ready=urls.append))
    try:
        while not urls:
            await asyncio.sleep(0.01)
        rate = PROVIDERS[protocol].default_rate
        plan = CallPlan(
            synthesize(SAY, rate),
            barge_in=synthesize(BARGE, rate, seed=2) if barge_in else None,
        )
        return await asyncio.wait_for(place_call(urls[0], protocol, plan), 60)
    finally:
        stop.set()
        await server


async def measure(
    protocols: list[str], rounds: int
) -> dict[str, list[tuple[CallReport, CallReport]]]:
    results: dict[str, list[tuple[CallReport, CallReport]]] = {p: [] for p in protocols}
    for _ in range(rounds):
        plain = await asyncio.gather(*(one_call(p, False) for p in protocols))
        barge = await asyncio.gather(*(one_call(p, True) for p in protocols))
        for p, a, b in zip(protocols, plain, barge, strict=True):
            results[p].append((a, b))
    return results


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.median(values) * 1000:.0f} / {max(values) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocols", default=",".join(sorted(PROVIDERS)))
    args = parser.parse_args()
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    results = asyncio.run(measure(protocols, args.rounds))
    print(f"Echo calls, {len(protocols)} protocols at once, {args.rounds} round(s); median / worst")
    print("| protocol | line rate | echo correlation (worst) | reply latency | clear latency |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for p in protocols:
        plain = [a for a, _ in results[p]]
        barge = [b for _, b in results[p]]
        corr = min(r.utterances[0].correlation for r in plain)
        reply = [
            u.reply_latency for r in plain for u in r.utterances if u.reply_latency is not None
        ]
        clear = [r.clear_latency for r in barge if r.clear_latency is not None]
        clear_text = ms(clear) if clear else "no clear message"
        print(f"| {p} | {plain[0].rate} | {corr:.4f} | {ms(reply)} | {clear_text} |")


if __name__ == "__main__":
    main()
