"""Preemptive replies: the reply latency at the phone with and without them, in one run.

    python bench/preemptive.py [--calls 3] [--protocol vonage]

The voice agent (:class:`voxwire.agents.pipeline.VoiceAgent`, the default
:class:`~voxwire.voice.turns.TurnPolicy`) runs with the fake services of
``bench/agent_latency.py``: the final transcript 100 ms after the caller stops, the
model's first token 200 ms after the request and a token every 20 ms, the synthesiser's
first audio 100 ms after its text. The simulated phone (:func:`voxwire.sim.place_dialog`)
calls it over loopback and asks four questions per call (espeak-ng speech), one call at
a time.

Four rows: the recogniser's text punctuated ("What are your opening hours?", which the
policy answers at once) or plain lowercase ("what are your opening hours", pocketsphinx's
style, which the policy gives 420 ms), each with ``VoiceConfig(preemptive=False)`` and
``preemptive=True``. *Reply latency* is the phone's: the end of the caller's speech to
the first reply sample playing. With punctuated text the policy does not wait, so
preemption has nothing to hide and the two rows should match; with plain text the model
and the synthesiser run inside the policy's wait.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server
from voxwire.aio import Call
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts
from voxwire.sim import PROVIDERS
from voxwire.sim.dialog import Turn, place_dialog
from voxwire.sim.speech import synthesize
from voxwire.voice.conversation import VoiceConfig

QUESTIONS = (
    "What are your opening hours?",
    "Do you take new patients?",
    "Where are you located?",
    "How much is a cleaning?",
)
ANSWER = "Sure. We open at nine."


def plain(text: str) -> str:
    """The text as a recogniser without punctuation gives it."""
    return "".join(c for c in text.lower() if c.isalnum() or c in " '")


async def one_call(
    protocol: str, punctuated: bool, preemptive: bool
) -> tuple[list[float], dict[str, int]]:
    said = [q if punctuated else plain(q) for q in QUESTIONS]
    agent = VoiceAgent(
        FakeStt(said, latency=0.1),
        FakeLlm(lambda messages: ANSWER, first_token=0.2, per_token=0.02),
        FakeTts(first_audio=0.1),
        config=VoiceConfig(preemptive=preemptive),
    )
    results: list[AgentCallResult] = []

    def on_end(call: Call, result: AgentCallResult) -> None:
        results.append(result)

    agent.on_end = on_end
    rate = PROVIDERS[protocol].default_rate
    turns = [Turn(synthesize(q, rate, seed=i), q) for i, q in enumerate(QUESTIONS)]
    async with agent_server(agent, protocol) as url:
        report = await place_dialog(url, protocol, turns, quiet=1.5)
        for _ in range(100):
            if results:
                break
            await asyncio.sleep(0.02)
    latencies = [t.reply_latency for t in report.turns if t.reply_latency is not None]
    drafts = results[0].drafts if results else {}
    return latencies, drafts


async def run(calls: int, protocol: str) -> list[list[str]]:
    rows = []
    for punctuated in (True, False):
        for preemptive in (False, True):
            latencies: list[float] = []
            drafts = {"started": 0, "used": 0, "discarded": 0}
            for _ in range(calls):
                got, counts = await one_call(protocol, punctuated, preemptive)
                latencies += got
                for key, value in counts.items():
                    drafts[key] += value
            text = "punctuated" if punctuated else "plain lowercase"
            mode = "preemptive" if preemptive else "at the endpoint"
            p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
            worst = max(latencies) * 1000 if latencies else float("nan")
            rows.append(
                [
                    f"{text} text, reply started {mode}",
                    f"{len(latencies)}/{calls * len(QUESTIONS)}",
                    f"{p50:.0f}",
                    f"{worst:.0f}",
                    f"{drafts['started']}/{drafts['used']}/{drafts['discarded']}",
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3, help="calls per row (4 turns each)")
    parser.add_argument("--protocol", default="vonage")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.calls, args.protocol))
    header = [
        "transcripts and reply start",
        "replies",
        "reply latency p50 (ms)",
        "worst (ms)",
        "drafts started/used/discarded",
    ]
    print(f"{args.protocol}, {args.calls} call(s) per row, {len(QUESTIONS)} questions each")
    print()
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join("---" for _ in header) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
