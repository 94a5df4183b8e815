"""The voice agent's framework overhead and barge-in at the phone, side by side with pipecat.

python bench/agent_latency.py [--turns 24] [--barge-ins 20] [--pipecat-python PATH]

Both agents run with fake services of the same fixed latencies: the recogniser's final
transcript 100 ms after the caller stops, the model's first token 200 ms after the
request and then one token every 20 ms, the synthesiser's first audio 100 ms after its
text. voxwire runs :class:`voxwire.agents.pipeline.VoiceAgent` with
:mod:`voxwire.services.fake` (``FakeStt(latency=0.1)``, ``FakeLlm(first_token=0.2,
per_token=0.02)``, ``FakeTts(first_audio=0.1)``); pipecat 1.14 runs its standard Twilio
pipeline with the fakes of ``bench/pipecat_fakes.py``, in the pipecat virtual
environment (``--pipecat-python``; the pipecat column is skipped, with a note, when that
interpreter cannot import pipecat). Each server runs in a process of its own; the phone
is :func:`voxwire.sim.place_call` (Twilio) in this process, for both, one call at a
time.

Scoring (per turn, :func:`overhead`)
------------------------------------
*Reply latency* is measured at the phone: from the end of the caller's speech to the
first reply sample playing. What the services and the turn-taking cost is subtracted:

    budget = max(endpoint delay, STT) + LLM first token + (k - 1) * per token + TTS

*endpoint delay* is voxwire's turn policy's wait (``TurnMetrics.endpoint -
speech_end``: the VAD hangover plus ``policy.delay(text)``, reported per turn by the
agent) and pipecat's VAD stop time (``VADParams.stop_secs``, stated in the table). The
recogniser's 100 ms run at the same time as the endpoint wait in both frameworks (each
recogniser hears the audio as it comes), so the larger of the two counts, not their sum;
``k`` is the number of tokens of the reply's first sentence (the synthesiser is given a
whole sentence: ``"Sure."`` is two tokens, 20 ms). The table also gives the serial form
``latency - (endpoint + 100 + 200 + 100 ms)`` for comparison. The rest is *overhead*:
VAD detection latency, queueing, the event loops, pacing and the network stack.

The phone's end of speech is the end of its last 10 ms block within 40 dB of the
loudest; a VAD's end of speech (where its endpoint clock starts) can lie before it, in
the quiet tail of the last word, which makes an overhead negative. The last column
(voxwire only) scores the agent's own ``TurnMetrics.reply_latency`` instead: from its
VAD's end of speech to the phone's mark for the first reply audio (one loopback trip
later than the audio started).

Barge-in (:func:`stale_audio`)
------------------------------
The caller talks over a long reply 1 s after it began. *Clear latency* is the phone's
(:attr:`voxwire.sim.CallReport.clear_latency`: onset of the barge-in speech to the clear
reaching the phone). *Stale audio* is reply audio the phone played after the clear and
before the caller stopped talking (no new reply can start before that): it should be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxwire.services.fake import split_tokens

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PIPECAT_FAKES = HERE / "pipecat_fakes.py"
DEFAULT_PIPECAT_PYTHON = ROOT / ".cache" / "pipecat-venv" / "bin" / "python"

STT_LATENCY = 0.1
LLM_FIRST_TOKEN = 0.2
LLM_PER_TOKEN = 0.02
TTS_FIRST_AUDIO = 0.1

QUESTION = "What are your opening hours?"
ANSWER = "Sure. We open at nine."
LONG_ANSWER = (
    "Sure. We are open from nine in the morning until five in the evening on weekdays, "
    "and from ten until two on Saturdays, and we are closed on Sundays and holidays."
)
BARGE = "Sorry to interrupt you there."
BARGE_TEXT = "sorry to interrupt you there"

#: pipecat's Silero VAD stop time used here (its VADParams default)
PIPECAT_VAD_STOP = 0.2


# --- scoring ------------------------------------------------------------------------------


def first_sentence_tokens(text: str) -> int:
    """Tokens (as the fake models stream them) up to the end of the first sentence."""
    tokens = split_tokens(text)
    for i, token in enumerate(tokens):
        if token.strip() in (".", "?", "!"):
            return i + 1
    return len(tokens)


def budget(endpoint_delay: float, reply: str = ANSWER) -> float:
    """Seconds the services and the endpoint wait take from the end of speech to audio."""
    k = first_sentence_tokens(reply)
    return (
        max(endpoint_delay, STT_LATENCY)
        + LLM_FIRST_TOKEN
        + max(0, k - 1) * LLM_PER_TOKEN
        + TTS_FIRST_AUDIO
    )


def overhead(latency: float, endpoint_delay: float, reply: str = ANSWER) -> float:
    """The framework's share of a reply latency (seconds); see the module docstring."""
    if not (math.isfinite(latency) and math.isfinite(endpoint_delay)):
        raise ValueError(f"latency and endpoint delay must be finite: {latency}, {endpoint_delay}")
    return latency - budget(endpoint_delay, reply)


def serial_overhead(latency: float, endpoint_delay: float) -> float:
    """``latency - (endpoint + STT + LLM first token + TTS)``: every stage in series."""
    return latency - (endpoint_delay + STT_LATENCY + LLM_FIRST_TOKEN + TTS_FIRST_AUDIO)


def p50_p95(values: Sequence[float]) -> tuple[float, float]:
    """The median and the 95th percentile (linear interpolation); NaN when empty."""
    if not values:
        return math.nan, math.nan
    a = np.asarray(values, dtype=np.float64)
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def stale_audio(
    played: Sequence[tuple[int, int]], rate: int, clear_at: float, barge_end: float
) -> float:
    """Seconds of audio the phone played in ``[clear_at, barge_end)`` (seconds from t0).

    ``played`` holds ``(first sample, samples)`` of each audio message as it played
    (:attr:`voxwire.sim.CallReport.played`).
    """
    lo, hi = round(clear_at * rate), round(barge_end * rate)
    total = 0
    for start, n in played:
        total += max(0, min(start + n, hi) - max(start, lo))
    return total / rate


# --- the servers --------------------------------------------------------------------------


@dataclass
class Server:
    """A server process, its URL, and the JSON lines it prints (one per finished call)."""

    name: str
    proc: asyncio.subprocess.Process
    url: str
    lines: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def next_call(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next finished call's record, or None if none came in ``timeout`` s."""
        try:
            return await asyncio.wait_for(self.lines.get(), timeout)
        except asyncio.TimeoutError:
            return None


def pipecat_available(python: Path) -> str | None:
    """None when ``python`` can import pipecat, else why not."""
    if not python.exists():
        return f"no pipecat interpreter at {python}"
    probe = subprocess.run(
        [str(python), "-c", "import pipecat, fastapi, uvicorn"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"{python} cannot import pipecat: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def server_command(kind: str, reply: str, pipecat_python: Path, port: int = 0) -> list[str]:
    """The command line of a server of ``kind`` ("voxwire" or "pipecat")."""
    if kind == "voxwire":
        return [sys.executable, str(HERE / "agent_latency.py"), "--serve", "--reply", reply]
    if kind == "pipecat":
        return [
            str(pipecat_python),
            "-W",
            "ignore",
            str(PIPECAT_FAKES),
            "--port",
            str(port),
            "--reply",
            reply,
            "--vad-stop",
            str(PIPECAT_VAD_STOP),
        ]
    raise ValueError(f"unknown server kind {kind!r}")


@contextlib.asynccontextmanager
async def run_server(
    kind: str,
    reply: str,
    pipecat_python: Path = DEFAULT_PIPECAT_PYTHON,
    *,
    cpu: int | None = None,
    port: int = 0,
    extra: Sequence[str] = (),
) -> AsyncIterator[Server]:
    """Start a server, wait for its ``ready URL`` line, stop it (SIGTERM) on exit."""
    cmd = [*server_command(kind, reply, pipecat_python, port), *extra]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env
    )
    assert proc.stdout is not None
    url = ""
    try:
        while not url:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line:
                raise RuntimeError(f"the {kind} server exited before it was ready")
            text = line.decode().strip()
            if text.startswith("ready "):
                url = text.split(" ", 1)[1]
        server = Server(kind, proc, url)

        async def pump() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                with contextlib.suppress(ValueError):
                    server.lines.put_nowait(json.loads(line))

        reader = asyncio.create_task(pump())
        try:
            yield server
        finally:
            reader.cancel()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


async def serve_voxwire(reply: str, port: int, ws_library: str = "websockets") -> None:
    """The voxwire agent server: prints ``ready URL`` and a JSON line per finished call."""
    from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
    from voxwire.agents.server import serve_agent
    from voxwire.aio import Call
    from voxwire.services.fake import FakeLlm, FakeStt, FakeTts

    def on_end(call: Call, result: AgentCallResult) -> None:
        turns = [
            {
                "speech_end": t.speech_end,
                "endpoint": t.endpoint,
                "endpoint_delay": t.endpoint_delay,
                "reply_latency": t.reply_latency,
                "interrupted": t.interrupted,
                "delays": t.stage_delays(),
            }
            for t in result.turns
        ]
        print(json.dumps({"turns": turns, "errors": result.errors}), flush=True)

    agent = VoiceAgent(
        FakeStt([QUESTION.lower(), BARGE_TEXT], latency=STT_LATENCY),
        FakeLlm(lambda messages: reply, first_token=LLM_FIRST_TOKEN, per_token=LLM_PER_TOKEN),
        FakeTts(first_audio=TTS_FIRST_AUDIO),
        on_end=on_end,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await serve_agent(
        agent,
        "twilio",
        "127.0.0.1",
        port,
        pipeline_rate=agent.pipeline_rate,
        stop=stop,
        ready=lambda url: print(f"ready {url}", flush=True),
        ws_library=ws_library,
    )


# --- the measurements ---------------------------------------------------------------------


@dataclass
class Turns:
    """What one framework's calls measured."""

    latency: list[float] = field(default_factory=list)
    endpoint: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    serial: list[float] = field(default_factory=list)
    agent_side: list[float] = field(default_factory=list)
    clear: list[float] = field(default_factory=list)
    stale: list[float] = field(default_factory=list)
    failed: int = 0
    endpoint_source: str = ""


async def measure_turns(server: Server, count: int) -> Turns:
    """``count`` calls of one question each; the reply latency and its overhead."""
    from voxwire.sim import CallPlan, place_call, synthesize

    out = Turns()
    speech = synthesize(QUESTION, 8000, seed=1)
    for _ in range(count):
        report = await asyncio.wait_for(
            place_call(server.url, "twilio", CallPlan(speech, quiet=0.3, tail=0.1)), 30
        )
        record = await server.next_call()
        latency = report.utterances[0].reply_latency
        endpoint = _endpoint_delay(server.name, record)
        if latency is None or endpoint is None:
            out.failed += 1
            continue
        out.latency.append(latency)
        out.endpoint.append(endpoint)
        out.overhead.append(overhead(latency, endpoint))
        out.serial.append(serial_overhead(latency, endpoint))
        if record is not None and record.get("turns"):
            agent_latency = record["turns"][0].get("reply_latency")
            if agent_latency is not None:
                out.agent_side.append(overhead(agent_latency, endpoint))
    out.endpoint_source = _endpoint_source(server.name)
    return out


def _endpoint_delay(kind: str, record: dict[str, Any] | None) -> float | None:
    """pipecat: its VAD stop time; voxwire: the turn's ``endpoint - speech_end`` (the
    VAD hangover plus the policy's delay)."""
    if kind == "pipecat":
        return PIPECAT_VAD_STOP
    if record is None or not record.get("turns"):
        return None
    turn = record["turns"][0]
    if turn["endpoint"] is None or turn["speech_end"] is None:
        return None
    return float(turn["endpoint"] - turn["speech_end"])


def _endpoint_source(kind: str) -> str:
    if kind == "pipecat":
        return f"VAD stop_secs {PIPECAT_VAD_STOP * 1000:.0f} ms"
    return "TurnMetrics.endpoint - speech_end"


async def measure_barge_ins(server: Server, count: int) -> Turns:
    """``count`` calls that talk over a long reply 1 s in."""
    from voxwire.sim import CallPlan, place_call, synthesize

    out = Turns()
    speech = synthesize(QUESTION, 8000, seed=1)
    barge = synthesize(BARGE, 8000, seed=2)
    for _ in range(count):
        plan = CallPlan(speech, barge_in=barge, barge_in_after=1.0, quiet=0.3, tail=0.1)
        report = await asyncio.wait_for(place_call(server.url, "twilio", plan), 40)
        await server.next_call()
        clear = report.clear_latency
        barge_u = [u for u in report.utterances if u.kind == "barge-in"]
        if clear is None or not barge_u:
            out.failed += 1
            continue
        out.clear.append(clear)
        out.stale.append(
            stale_audio(report.played, report.rate, barge_u[0].onset + clear, barge_u[0].end)
        )
    return out


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


def overhead_table(rows: dict[str, Turns | str]) -> list[str]:
    """The markdown table of part 1."""
    lines = [
        "| framework | turns | endpoint delay p50 (source) | reply latency p50 / p95 ms "
        "| overhead p50 / p95 ms | serial form p50 / p95 ms | agent-side overhead p50 / p95 ms |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, t in rows.items():
        if isinstance(t, str):
            lines.append(f"| {name} | - | {t} | - | - | - | - |")
            continue
        lat, ovh, brf = p50_p95(t.latency), p50_p95(t.overhead), p50_p95(t.serial)
        agent = p50_p95(t.agent_side)
        agent_cell = f"{_ms(agent[0])} / {_ms(agent[1])}" if t.agent_side else "-"
        ep = p50_p95(t.endpoint)[0]
        failed = f" ({t.failed} failed)" if t.failed else ""
        lines.append(
            f"| {name} | {len(t.latency)}{failed} | {_ms(ep)} ms ({t.endpoint_source}) "
            f"| {_ms(lat[0])} / {_ms(lat[1])} | {_ms(ovh[0])} / {_ms(ovh[1])} "
            f"| {_ms(brf[0])} / {_ms(brf[1])} | {agent_cell} |"
        )
    return lines


def barge_table(rows: dict[str, Turns | str]) -> list[str]:
    """The markdown table of part 2."""
    lines = [
        "| framework | barge-ins | clear latency p50 / p95 ms | calls with stale audio "
        "| stale audio max ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, t in rows.items():
        if isinstance(t, str):
            lines.append(f"| {name} | - | {t} | - | - |")
            continue
        c = p50_p95(t.clear)
        stale = sum(s > 0 for s in t.stale)
        worst = max(t.stale, default=math.nan)
        failed = f" ({t.failed} without a clear)" if t.failed else ""
        lines.append(
            f"| {name} | {len(t.clear)}{failed} | {_ms(c[0])} / {_ms(c[1])} "
            f"| {stale} | {_ms(worst)} |"
        )
    return lines


async def run(args: argparse.Namespace) -> None:
    python = Path(args.pipecat_python)
    why = None if args.no_pipecat else pipecat_available(python)
    if args.no_pipecat:
        why = "skipped (--no-pipecat)"
    kinds = ["voxwire"] + ([] if why else ["pipecat"])
    latency: dict[str, Turns | str] = {}
    barge: dict[str, Turns | str] = {}
    for kind in kinds:
        async with run_server(kind, ANSWER, python) as server:
            latency[kind] = await measure_turns(server, args.turns)
        async with run_server(kind, LONG_ANSWER, python) as server:
            barge[kind] = await measure_barge_ins(server, args.barge_ins)
    if why:
        latency["pipecat 1.14"] = barge["pipecat 1.14"] = f"not measured: {why}"
    else:
        latency["pipecat 1.14"] = latency.pop("pipecat")
        barge["pipecat 1.14"] = barge.pop("pipecat")
    command = "python bench/agent_latency.py " + " ".join(sys.argv[1:])
    print(f"Reply latency at the phone and framework overhead ({command.strip()})")
    print(
        f"fakes: STT {STT_LATENCY * 1000:.0f} ms, LLM {LLM_FIRST_TOKEN * 1000:.0f} ms + "
        f"{LLM_PER_TOKEN * 1000:.0f} ms/token, TTS {TTS_FIRST_AUDIO * 1000:.0f} ms; "
        f"reply {ANSWER!r} (first sentence {first_sentence_tokens(ANSWER)} tokens)"
    )
    print()
    print("\n".join(overhead_table(latency)))
    print()
    print(f"Barge-in 1 s into the reply ({command.strip()})")
    print()
    print("\n".join(barge_table(barge)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=24)
    parser.add_argument("--barge-ins", type=int, default=20)
    parser.add_argument("--pipecat-python", default=str(DEFAULT_PIPECAT_PYTHON))
    parser.add_argument("--no-pipecat", action="store_true", help="measure voxwire only")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reply", default=ANSWER, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ws", default="websockets", help=argparse.SUPPRESS)
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        server = serve_voxwire(args.reply, args.port, args.ws)
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(server)
        else:
            asyncio.run(server)
        return
    if args.turns < 1 or args.barge_ins < 1:
        parser.error("--turns and --barge-ins must be at least 1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
