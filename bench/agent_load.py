"""CPU per concurrent voice-agent call on one core, side by side with pipecat.

python bench/agent_load.py [--ns 10,50,100,200] [--pipecat-ns 10,20] [--window 20]
    [--ws websockets,picows,picows+uvloop]

For each N a fresh server runs pinned to CPU 1 (``taskset -c 1``) and this process, the
load generator, to CPU 0. The servers are those of ``bench/agent_latency.py``: voxwire's
:class:`~voxwire.agents.pipeline.VoiceAgent` with :mod:`voxwire.services.fake`, and
pipecat 1.14's Twilio pipeline with the fakes of ``bench/pipecat_fakes.py`` (skipped,
with a note, when the pipecat interpreter cannot import pipecat), both with the same
latencies (STT 100 ms, LLM 200 ms + 20 ms a token, TTS 100 ms).

Each of the N callers is a Twilio Media Streams client written here: ``connected`` and
``start``, then one 160-byte mu-law ``media`` message every 20 ms on an absolute
schedule (callers spread over the tick), repeating a cycle of the spoken question
(espeak-ng) and silence; it plays what it receives on a play-out clock and echoes each
``mark`` once the audio before it has played (a ``clear`` returns the pending marks), as
Twilio does. Over a steady window after a warm-up it reports the server's CPU (user +
system of its process, from ``/proc``) as a fraction of one core per call, the replies
it missed (a question with no reply audio before the next question), the reply latency,
the 99th percentile of the interval between reply messages inside a reply, and its own
CPU and send lateness (is the generator keeping up?), and how long the server waited,
runnable, for its CPU (``/proc/PID/schedstat``: other processes on a shared machine).
``--profile DIR`` samples the voxwire server with py-spy during each window
(``DIR/voxwire_nN.collapsed``; py-spy's sampling costs the server a little CPU, so
take the figures from a run without it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agent_latency as al
from voxwire.g711 import encode_ulaw

TICK = 0.02
CYCLE = 5.0  # seconds: the question, then silence (the reply plays in it)
FRAME = 160


def _clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


def run_queue_wait(pid: int) -> float:
    """Seconds the main thread of ``pid`` has waited, runnable, for a CPU (schedstat);
    NaN where the kernel does not keep it."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


def cycle_payloads(speech: np.ndarray[Any, Any]) -> tuple[list[str], int]:
    """The cycle's base64 mu-law payloads (one per 20 ms) and the frame the speech ends in."""
    from voxwire.sim.speech import speech_bounds

    _, last = speech_bounds(speech, 8000)
    total = round(CYCLE / TICK) * FRAME
    if len(speech) > total:
        raise ValueError("the question is longer than the cycle")
    pcm = np.zeros(total, np.int16)
    pcm[: len(speech)] = speech
    codes = bytes(encode_ulaw(pcm))
    payloads = [
        base64.b64encode(codes[i : i + FRAME]).decode() for i in range(0, len(codes), FRAME)
    ]
    return payloads, last


@dataclass
class Caller:
    """One simulated Twilio call."""

    index: int
    n: int
    payloads: list[str]
    speech_end_sample: int
    sid: str = field(default_factory=lambda: "MZ" + uuid.uuid4().hex)
    seq: int = 0
    ws: Any = None
    lateness: list[tuple[float, float]] = field(default_factory=list)
    speech_ends: list[float] = field(default_factory=list)
    received: list[float] = field(default_factory=list)
    play_end: float = 0.0
    marks: list[asyncio.TimerHandle] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def phase(self) -> float:
        return self.index / self.n * TICK

    @property
    def offset(self) -> int:
        """Frames of the cycle skipped at the start (callers spread over the cycle)."""
        return round(self.index / self.n * len(self.payloads))

    def message(self, event: dict[str, Any]) -> str:
        self.seq += 1
        event["sequenceNumber"] = str(self.seq)
        event["streamSid"] = self.sid
        return json.dumps(event)

    def media(self, k: int, payload: str) -> str:
        """The ``media`` message of frame ``k``: :meth:`message`'s JSON, formatted without
        :func:`json.dumps` (the generator sends 50 a second per call; base64 needs no
        escaping)."""
        self.seq += 1
        return (
            f'{{"event": "media", "media": {{"track": "inbound", "chunk": "{k + 1}", '
            f'"timestamp": "{k * 20}", "payload": "{payload}"}}, '
            f'"sequenceNumber": "{self.seq}", "streamSid": "{self.sid}"}}'
        )

    async def connect(self, url: str) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(url, compression=None, max_size=2**22, open_timeout=60)
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
        start = {
            "accountSid": "AC" + "0" * 32,
            "streamSid": self.sid,
            "callSid": "CA" + self.sid[2:],
            "tracks": ["inbound"],
            "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await self.ws.send(self.message({"event": "start", "start": start}))

    async def send_mark(self, name: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send(self.message({"event": "mark", "mark": {"name": name}}))

    def _echo(self, name: str) -> None:
        if name in self.pending:
            self.pending.remove(name)
            task = asyncio.ensure_future(self.send_mark(name))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def reader(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for raw in self.ws:
                now = loop.time()
                msg = json.loads(raw)
                event = msg.get("event")
                if event == "media":
                    payload = msg["media"]["payload"]
                    samples = len(payload) // 4 * 3 - payload[-2:].count("=")
                    self.received.append(now)
                    self.play_end = max(self.play_end, now) + samples / 8000
                elif event == "mark":
                    name = msg["mark"]["name"]
                    self.pending.append(name)
                    loop.call_at(max(now, self.play_end), self._echo, name)
                elif event == "clear":
                    self.play_end = now
                    for name in list(self.pending):
                        self._echo(name)
        except Exception as exc:
            if "ConnectionClosed" not in type(exc).__name__:
                self.errors.append(repr(exc))

    async def sender(self, t0: float, t_stop: float) -> None:
        loop = asyncio.get_running_loop()
        frames = len(self.payloads)
        k = 0
        try:
            while (due := t0 + self.phase + k * TICK) < t_stop:
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = loop.time()
                self.lateness.append((due, now - due))
                j = (k + self.offset) % frames
                if j * FRAME < self.speech_end_sample <= (j + 1) * FRAME:
                    # the speech ends inside this frame; it is sent once complete
                    within = self.speech_end_sample - j * FRAME
                    self.speech_ends.append(due - TICK + within / 8000)
                await self.ws.send(self.media(k, self.payloads[j]))
                k += 1
            stop = {"accountSid": "AC" + "0" * 32, "callSid": "CA" + self.sid[2:]}
            await self.ws.send(self.message({"event": "stop", "stop": stop}))
        except Exception as exc:
            self.errors.append(repr(exc))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)


@dataclass
class LoadResult:
    """One N's figures."""

    n: int
    cores: float
    per_call: float
    expected: int
    missed: int
    latency_p50: float
    latency_p99: float
    interval_p99: float
    generator_cores: float
    late_p99: float
    errors: int
    starved: float = math.nan
    """Fraction of the window the server waited, runnable, for its CPU (shared machines)."""


def score(
    callers: list[Caller], w0: float, w1: float, cycle: float = CYCLE
) -> tuple[int, int, list[float], list[float]]:
    """(replies expected, missed, reply latencies, intervals inside replies) in [w0, w1)."""
    expected = missed = 0
    latency: list[float] = []
    intervals: list[float] = []
    for c in callers:
        rx = np.asarray(c.received)
        for e in c.speech_ends:
            if not w0 <= e < w1:
                continue
            expected += 1
            # the reply must start before the next question begins
            nxt = e + cycle * 0.6
            inside = rx[(rx > e) & (rx < nxt)]
            if not len(inside):
                missed += 1
                continue
            latency.append(float(inside[0] - e))
            burst = rx[(rx >= inside[0]) & (rx < e + cycle * 0.9)]
            gaps = np.diff(burst)
            intervals.extend(float(g) for g in gaps if g < 0.5)
    return expected, missed, latency, intervals


async def load(url: str, pid: int, n: int, warmup: float, window: float) -> LoadResult:
    """Run ``n`` callers against the server at ``url`` (process ``pid``)."""
    from voxwire.sim import synthesize

    speech = synthesize(al.QUESTION, 8000, seed=1)
    payloads, end = cycle_payloads(speech)
    callers = [Caller(i, n, payloads, end) for i in range(n)]
    for i in range(0, n, 25):
        await asyncio.gather(*(c.connect(url) for c in callers[i : i + 25]))
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.3
    w0, w1 = t0 + warmup, t0 + warmup + window
    t_stop = w1 + 2.0
    readers = [asyncio.create_task(c.reader()) for c in callers]
    senders = [asyncio.create_task(c.sender(t0, t_stop)) for c in callers]
    await asyncio.sleep(max(0.0, w0 - loop.time()))
    s0, m0, a = process_cpu(pid), time.process_time(), loop.time()
    q0 = run_queue_wait(pid)
    await asyncio.sleep(max(0.0, w1 - loop.time()))
    s1, m1, b = process_cpu(pid), time.process_time(), loop.time()
    q1 = run_queue_wait(pid)
    # A server that stops reading (or a stuck connection) must not hold the run: the
    # senders get until 10 s after their last frame, then count as errors.
    _, stuck = await asyncio.wait(senders, timeout=max(0.0, t_stop - loop.time()) + 10.0)
    for c, task in zip(callers, senders, strict=True):
        if task in stuck:
            c.errors.append("sender stuck: the server stopped reading")
            task.cancel()
    await asyncio.wait(readers, timeout=5)
    for task in [*readers, *stuck]:
        task.cancel()
    await asyncio.gather(*readers, *stuck, return_exceptions=True)
    expected, missed, latency, intervals = score(callers, w0, w1)
    late = [late for c in callers for due, late in c.lateness if w0 <= due < w1]
    cores = (s1 - s0) / (b - a)
    return LoadResult(
        n=n,
        cores=cores,
        per_call=cores / n,
        expected=expected,
        missed=missed,
        latency_p50=_pct(latency, 50),
        latency_p99=_pct(latency, 99),
        interval_p99=_pct(intervals, 99),
        generator_cores=(m1 - m0) / (b - a),
        late_p99=_pct(late, 99),
        errors=sum(len(c.errors) for c in callers),
        starved=(q1 - q0) / (b - a),
    )


def inbound_cost(calls: int, seconds: float) -> float:
    """CPU seconds per call-second of the agent's inbound path, in this process.

    ``calls`` conversations each take ``seconds`` of the callers' cycle, message by
    message, as the server does: the Twilio codec (JSON, base64, mu-law, 8 -> 16 kHz),
    :meth:`~voxwire.voice.conversation.Conversation.audio` (gain, VAD, turn steps) and
    the fake recogniser. No sockets, no event loop, no reply: process CPU time, so a
    machine busy with other work slows it down without changing the figure much.
    """
    from voxwire.protocols import CODECS, Audio
    from voxwire.resample import Resampler
    from voxwire.services.fake import FakeStt
    from voxwire.sim import synthesize
    from voxwire.voice.conversation import Conversation, SttAudio
    from voxwire.voice.history import History
    from voxwire.voice.turns import TurnPolicy

    payloads, _ = cycle_payloads(synthesize(al.QUESTION, 8000, seed=1))
    callers = [Caller(i, calls, payloads, 0) for i in range(calls)]
    codecs = []
    for c in callers:
        codec = CODECS["twilio"](pipeline_rate=16000, resampler=Resampler)
        start = {
            "streamSid": c.sid,
            "callSid": "CA" + c.sid[2:],
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        codec.receive(c.message({"event": "start", "start": start}), 0.0)
        codecs.append(codec)
    stt = FakeStt([al.QUESTION.lower()], latency=al.STT_LATENCY)
    parts = [
        (codec, Conversation(16000, TurnPolicy(), History("")), stt.stream()) for codec in codecs
    ]
    frames = round(seconds / TICK)
    messages = [
        [c.media(k, payloads[(k + c.offset) % len(payloads)]) for c in callers]
        for k in range(frames)
    ]
    t0 = time.process_time()
    for k, row in enumerate(messages):
        now = k * TICK
        for (codec, conversation, stream), message in zip(parts, row, strict=True):
            for event in codec.receive(message, now):
                if isinstance(event, Audio):
                    for action in conversation.audio(event.pcm, now):
                        if isinstance(action, SttAudio):
                            stream.push(action.pcm)
            conversation.get_timer()
    return (time.process_time() - t0) / (calls * frames * TICK)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


async def profile(pid: int, py_spy: str, after: float, seconds: float, out: Path) -> None:
    """Sample process ``pid`` with py-spy for ``seconds``, ``after`` seconds from now, into
    ``out`` (collapsed stacks, one ``stack count`` line each)."""
    await asyncio.sleep(after)
    proc = await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


async def run_one(
    kind: str, n: int, args: argparse.Namespace, ws_library: str = "websockets"
) -> LoadResult:
    library, _, loop = ws_library.partition("+")
    extra = ["--ws", library, "--loop", loop or "asyncio"] if kind == "voxwire" else []
    async with al.run_server(
        kind, al.ANSWER, Path(args.pipecat_python), cpu=args.server_cpu, extra=extra
    ) as server:
        await asyncio.sleep(1.0)  # let the server settle (pipecat loads Silero per call)
        spy = None
        if args.profile and kind == "voxwire":
            out = Path(args.profile) / f"{kind}_n{n}.collapsed"
            spy = asyncio.create_task(
                profile(server.proc.pid, args.py_spy, 2.0 + args.warmup, args.window, out)
            )
        result = await load(server.url, server.proc.pid, n, args.warmup, args.window)
        if spy is not None:
            await spy
        return result


def _pct_cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:.0f}%"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


def table(rows: list[tuple[str, LoadResult | str]]) -> list[str]:
    """The markdown table."""
    lines = [
        "| server | calls | server cores | core per call | replies missed / expected "
        "| reply latency p50 / p99 ms | outbound interval p99 ms | generator cores "
        "| send late p99 ms | server run-queue wait |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        if isinstance(r, str):
            lines.append(f"| {name} | - | {r} | - | - | - | - | - | - | - |")
            continue
        err = f" ({r.errors} errors)" if r.errors else ""
        lines.append(
            f"| {name} | {r.n}{err} | {r.cores:.3f} | {r.per_call:.4f} "
            f"| {r.missed} / {r.expected} | {_ms(r.latency_p50)} / {_ms(r.latency_p99)} "
            f"| {r.interval_p99 * 1000:.1f} | {r.generator_cores:.3f} | {r.late_p99 * 1000:.1f} "
            f"| {_pct_cell(r.starved)} |"
        )
    return lines


async def run(args: argparse.Namespace) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {args.generator_cpu})
    if args.inbound:
        costs = sorted(inbound_cost(args.inbound, args.window) for _ in range(5))
        print(
            f"Inbound path (python bench/agent_load.py {' '.join(sys.argv[1:])}): "
            f"{args.inbound} calls x {args.window:g} s, 5 runs; CPU per call-second "
            f"min {costs[0] * 1000:.2f} ms, median {costs[2] * 1000:.2f} ms "
            f"({costs[0] * 1e6 * TICK:.1f} us per 20 ms message at the minimum)"
        )
        return
    rows: list[tuple[str, LoadResult | str]] = []
    for n in args.ns:
        for library in args.ws:  # interleaved, so a neighbour's load falls on each alike
            name = "voxwire" if library == "websockets" else f"voxwire on {library}"
            rows.append((name, await run_one("voxwire", n, args, library)))
            print("\n".join(table(rows[-1:])[2:]), file=sys.stderr, flush=True)
    why = al.pipecat_available(Path(args.pipecat_python))
    if why:
        rows.append(("pipecat 1.14", f"not measured: {why}"))
    else:
        for n in args.pipecat_ns:
            rows.append(("pipecat 1.14", await run_one("pipecat", n, args)))
            print("\n".join(table(rows[-1:])[2:]), file=sys.stderr, flush=True)
    command = "python bench/agent_load.py " + " ".join(sys.argv[1:])
    print(
        f"Voice-agent calls on one core ({command.strip()}); warm-up {args.warmup:g} s, "
        f"window {args.window:g} s, server on CPU {args.server_cpu}, generator on CPU "
        f"{args.generator_cpu}"
    )
    print()
    print("\n".join(table(rows)))


def _libraries(text: str) -> list[str]:
    from voxwire.agents.server import WS_LIBRARIES

    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [
        v for v in names if v not in WS_LIBRARIES and v not in [f"{w}+uvloop" for w in WS_LIBRARIES]
    ]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected names from {WS_LIBRARIES}, each optionally with +uvloop, got {text!r}"
        )
    return names


def _ns(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a list of call counts >= 1, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", type=_ns, default=[10, 50, 100, 200])
    parser.add_argument("--pipecat-ns", type=_ns, default=[10, 20])
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--server-cpu", type=int, default=1)
    parser.add_argument("--generator-cpu", type=int, default=0)
    parser.add_argument("--pipecat-python", default=str(al.DEFAULT_PIPECAT_PYTHON))
    parser.add_argument(
        "--ws",
        type=_libraries,
        default=["websockets"],
        help="the voxwire servers: WebSocket libraries, each optionally on uvloop, "
        "e.g. websockets,picows,picows+uvloop",
    )
    parser.add_argument(
        "--profile", default="", help="folder for py-spy profiles of the voxwire server"
    )
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    parser.add_argument(
        "--inbound",
        type=int,
        default=0,
        metavar="CALLS",
        help="only time the inbound path of CALLS calls in this process (no servers)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
