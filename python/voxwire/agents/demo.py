"""``voxwire demo``: a whole phone conversation with an offline voice agent, on loopback.

The agent is the receptionist of a fictional dental clinic, Harbor Dental, on engines that
need no key and no network: pocketsphinx hears the caller
(:mod:`voxwire.services.stt_pocketsphinx`), a deterministic local model decides what to
say (:mod:`voxwire.services.llm_rules`: intent rules, the clinic's knowledge folder on
SQLite FTS5, and the booking tool on SQLite), and espeak-ng speaks
(:mod:`voxwire.services.tts_espeak`). :func:`build_agent` makes it (what ``voxwire serve
--agent demo`` runs). Any of the three engines can be swapped for a service chosen by
name (:mod:`voxwire.services.registry`: ``voxwire serve --agent demo --llm openai``,
``voxwire demo --stt deepgram ...``); the clinic's knowledge and booking tools stay.

:func:`run_demo` starts that agent on a telephony protocol on 127.0.0.1, calls it with the
simulated phone (:mod:`voxwire.sim.dialog`), which says a script with espeak-ng's voice:
a question the knowledge folder answers, a question with a long answer that the caller
talks over, a booking, and a goodbye after which the agent hangs up. It returns a
:class:`DemoReport`: what the caller said, what the recogniser heard, what the agent
said and what the caller heard of it, the history after the barge-in, and each turn's
stage timings.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxwire.agents.booking import Bookings, book_spec, book_tool
from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server
from voxwire.aio.surface import CallSurface
from voxwire.knowledge import KnowledgeBase, search_spec, search_tool
from voxwire.services.base import LanguageModel, SpeechToText, TextToSpeech
from voxwire.services.llm_rules import RulesModel
from voxwire.services.registry import ServiceChoice
from voxwire.sim.dialog import DialogReport, Turn, place_dialog
from voxwire.sim.providers import PROVIDERS
from voxwire.sim.speech import synthesize
from voxwire.voice.conversation import VoiceConfig
from voxwire.voice.metrics import STAGES, TurnMetrics
from voxwire.voice.tools import Tool

__all__ = [
    "DEMO_PHRASES",
    "GREETING",
    "KNOWLEDGE_DIR",
    "SCRIPT",
    "DemoAgent",
    "DemoReport",
    "build_agent",
    "build_demo",
    "run_demo",
]

KNOWLEDGE_DIR = Path(__file__).with_name("demo_knowledge")
"""The clinic's knowledge folder (markdown files shipped with voxwire)."""

GREETING = "Thank you for calling Harbor Dental. How can I help you?"

SYSTEM_PROMPT = (
    "You are the receptionist of Harbor Dental, a dental clinic, on the phone. Answer in "
    "one or two short spoken sentences, from the clinic's knowledge (search_knowledge) "
    "where you can, book appointments with book_appointment once you have the caller's "
    "name, a day and a time, and call end_call after saying goodbye."
)

SCRIPT: tuple[tuple[str, float | None], ...] = (
    ("What are your opening hours?", None),
    ("What services do you offer?", None),
    ("I would like to book a cleaning.", 2.0),
    ("Friday at three pm.", None),
    ("It is for Maria.", None),
    ("Thank you, goodbye.", None),
)
"""What the simulated caller says: (text, barge in this many seconds into the reply)."""

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "tomorrow")
_TIMES = tuple(f"{h} {m}" for h in ("nine", "ten", "eleven") for m in ("am",)) + tuple(
    f"{h} pm" for h in ("twelve", "one", "two", "three", "four", "five")
)
_NAMES = ("alex", "sam", "maria", "olivia", "john", "peter", "anna")
DEMO_PHRASES: tuple[str, ...] = (
    "what are your opening hours",
    "when are you open",
    "are you open on saturday",
    "what time do you close",
    "where are you",
    "what is your address",
    "is there parking",
    "how much is a cleaning",
    "how much does a check up cost",
    "what are your prices",
    "what services do you offer",
    "tell me about your services",
    "do you do whitening",
    "i would like to book a cleaning",
    "i would like to book an appointment",
    "i would like to book a check up",
    "can i book an appointment",
    "i need to cancel my appointment",
    *(f"{d} at {t}" for d in _DAYS for t in _TIMES),
    *(f"on {d}" for d in _DAYS),
    *(f"it is for {n}" for n in _NAMES),
    *(f"my name is {n}" for n in _NAMES),
    "yes",
    "no",
    "yes please",
    "no thank you",
    "thank you",
    "thank you goodbye",
    "goodbye",
    "that is all",
    "sorry",
)
"""What callers of the clinic say: the recogniser's vocabulary (pocketsphinx's generic
model hears a synthetic voice poorly; a domain phrase list, as IVR grammars and hosted
recognisers' keyword lists do, makes it usable). Words outside it are not recognised."""


@dataclass
class DemoAgent:
    """The demo's agent and the two databases its tools use."""

    agent: VoiceAgent
    knowledge: KnowledgeBase
    bookings: Bookings


def build_demo(
    *,
    llm: LanguageModel | None = None,
    stt: SpeechToText | None = None,
    tts: TextToSpeech | None = None,
    services: ServiceChoice | None = None,
    bookings_db: str | Path = ":memory:",
    knowledge_db: str | Path = ":memory:",
    telephone: bool = True,
) -> DemoAgent:
    """The Harbor Dental agent on the offline engines (see the module docstring).

    ``llm``, ``stt`` and ``tts`` replace the deterministic local model (e.g. with
    :class:`voxwire.services.llm_llama.LlamaCppModel`), pocketsphinx and espeak-ng;
    ``services`` (services chosen by name) fills those not given. ``bookings_db`` and
    ``knowledge_db`` are SQLite files (in memory by default). ``telephone`` tunes the
    recogniser for 8 kHz phone audio.

    Raises
    ------
    voxwire.services.registry.ServiceConfigError
        A chosen service cannot be made (its package is missing, a setting refused).
    """
    from voxwire.services.stt_pocketsphinx import PocketSphinxStt
    from voxwire.services.tts_espeak import EspeakTts

    knowledge = KnowledgeBase(knowledge_db)
    knowledge.add_folder(KNOWLEDGE_DIR)
    if services is not None:
        try:
            stt = stt or services.build_stt(phrases=DEMO_PHRASES)
            llm = llm or services.build_llm(knowledge=knowledge)
            tts = tts or services.build_tts()
        except Exception:
            knowledge.close()
            raise
    bookings = Bookings(bookings_db)
    tools = [
        Tool(search_spec(), functools.partial(search_tool, knowledge), timeout=2.0),
        Tool(book_spec(), functools.partial(book_tool, bookings), timeout=2.0),
    ]
    agent = VoiceAgent(
        stt if stt is not None else PocketSphinxStt(phrases=DEMO_PHRASES),
        llm if llm is not None else RulesModel(knowledge),
        tts if tts is not None else EspeakTts(),
        system_prompt=SYSTEM_PROMPT,
        tools=tools,
        config=VoiceConfig(greeting=GREETING),
    )
    return DemoAgent(agent, knowledge, bookings)


def build_agent(services: ServiceChoice | None = None) -> VoiceAgent:
    """The demo agent, for ``voxwire serve --agent demo`` (with the services its
    ``--stt``, ``--llm`` and ``--tts`` chose, in place of the offline engines)."""
    return build_demo(services=services).agent


# --- the demo call ------------------------------------------------------------------------


@dataclass
class DemoTurn:
    """One exchange: what the caller said, what was heard, what the agent said."""

    said: str
    stt: str
    agent: str
    heard: str
    interrupted: bool
    metrics: TurnMetrics | None


@dataclass
class DemoReport:
    """What :func:`run_demo` saw; :meth:`text` prints it, :meth:`as_dict` for JSON."""

    protocol: str
    turns: list[DemoTurn]
    history: list[dict[str, Any]]
    history_after_barge_in: list[dict[str, Any]]
    bookings: list[dict[str, str]]
    hung_up: bool
    phone: DialogReport
    wall_seconds: float
    errors: dict[str, int] = field(default_factory=dict)
    engines: str = "offline engines"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "protocol": self.protocol,
            "engines": self.engines,
            "turns": [
                {
                    "said": t.said,
                    "stt": t.stt,
                    "agent": t.agent,
                    "heard": t.heard,
                    "interrupted": t.interrupted,
                    "metrics": t.metrics.as_dict() if t.metrics else None,
                }
                for t in self.turns
            ],
            "history": self.history,
            "history_after_barge_in": self.history_after_barge_in,
            "bookings": self.bookings,
            "hung_up": self.hung_up,
            "errors": self.errors,
            "wall_seconds": round(self.wall_seconds, 2),
        }

    def text(self) -> str:
        """The transcript, the history after the barge-in, and the latency table."""
        lines = [f"voxwire demo: Harbor Dental on {self.protocol}, {self.engines}", ""]
        for i, t in enumerate(self.turns):
            lines.append(f"turn {i}")
            if t.said:
                lines.append(f"  caller said   : {t.said}")
                lines.append(f"  STT heard     : {t.stt}")
            lines.append(f"  agent said    : {t.agent}")
            cut = " (cut by the barge-in)" if t.interrupted else ""
            lines.append(f"  caller heard  : {t.heard}{cut}")
        if self.history_after_barge_in:
            lines += ["", "history after the barge-in:"]
            for m in self.history_after_barge_in:
                content = m["content"]
                if m["role"] == "tool":  # the passages a search returned: their first line
                    first = content.splitlines()[0] if content else ""
                    content = first if len(first) <= 80 else first[:77] + "..."
                    content += f" (+{max(0, len(m['content']) - len(first))} chars)"
                extra = ""
                if m.get("tool_calls"):
                    extra = "-> " + ", ".join(c["name"] for c in m["tool_calls"])
                lines.append(f"  {m['role']:>9}: {content}{extra}")
        lines += ["", "per-turn latency, ms after the end of the caller's speech:"]
        names = list(STAGES[1:])
        header = "| turn | " + " | ".join(n.replace("_", " ") for n in names) + " |"
        lines += [header, "|" + " ---: |" * (len(names) + 1)]
        for i, t in enumerate(self.turns):
            if t.metrics is None or t.metrics.speech_end is None:
                continue
            delays = t.metrics.stage_delays()
            cells = [_ms(delays[n]) for n in names]
            lines.append(f"| {i} | " + " | ".join(cells) + " |")
        lines += ["", "bookings in SQLite:"]
        lines += [f"  {b}" for b in self.bookings] or ["  (none)"]
        ended = "the agent hung up" if self.hung_up else "the caller hung up"
        lines += ["", f"{ended}; {self.wall_seconds:.1f} s wall time"]
        if self.errors:
            lines.append(f"service errors: {self.errors}")
        return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _script(rate: int, script: Sequence[tuple[str, float | None]]) -> list[Turn]:
    turns = [Turn()]  # listen to the greeting first
    for i, (text, barge) in enumerate(script):
        speech = synthesize(text, rate, voice="en-us", wpm=150, seed=3 + i)
        turns.append(Turn(speech, text, barge_in_after=barge))
    return turns


async def run_demo(
    protocol: str = "vonage",
    *,
    services: ServiceChoice | None = None,
    script: Sequence[tuple[str, float | None]] = SCRIPT,
    timeout: float = 90.0,
) -> DemoReport:
    """Serve the demo agent on ``protocol`` on 127.0.0.1, call it, and report.

    ``services`` replaces the offline engines it names (see :func:`build_demo`); the
    caller says ``script`` (:data:`SCRIPT` by default), as (text, barge in after)
    pairs. The services built here are closed at the end.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            demo = build_demo(services=services, bookings_db=Path(tmp) / "bookings.db")
            return await _run(demo, protocol, services, script, timeout, started)
        finally:
            if services is not None:
                await services.aclose()


def _engines(services: ServiceChoice | None) -> str:
    if not services:
        return "offline engines"
    chosen = (services.stt, services.llm, services.tts)
    offline = ("stt pocketsphinx", "llm rules", "tts espeak")
    return "; ".join(s.describe() if s else d for s, d in zip(chosen, offline, strict=True))


async def _run(
    demo: DemoAgent,
    protocol: str,
    services: ServiceChoice | None,
    script: Sequence[tuple[str, float | None]],
    timeout: float,
    started: float,
) -> DemoReport:
    loop = asyncio.get_running_loop()
    results: list[AgentCallResult] = []
    snapshots: list[list[dict[str, Any]]] = []

    def on_end(call: CallSurface, result: AgentCallResult) -> None:
        results.append(result)

    demo.agent.on_end = on_end
    demo.agent.on_turn = functools.partial(_snapshot, snapshots)
    rate = PROVIDERS[protocol].default_rate
    try:
        async with agent_server(demo.agent, protocol) as url:
            phone = await asyncio.wait_for(
                place_dialog(url, protocol, _script(rate, script), quiet=0.7, reply_timeout=12.0),
                timeout,
            )
            for _ in range(250):
                if results:
                    break
                await asyncio.sleep(0.02)
        bookings = demo.bookings.list()
    finally:
        demo.bookings.close()
        demo.knowledge.close()
    if not results:
        raise RuntimeError("the agent did not report the call")
    report = _report(
        protocol, script, phone, results[0], snapshots, bookings, loop.time() - started
    )
    report.engines = _engines(services)
    return report


def _snapshot(into: list[list[dict[str, Any]]], metrics: TurnMetrics, history: Any) -> None:
    if metrics.interrupted:
        into.append(history.to_dict()["messages"])


def _report(
    protocol: str,
    script: Sequence[tuple[str, float | None]],
    phone: DialogReport,
    result: AgentCallResult,
    snapshots: Sequence[list[dict[str, Any]]],
    bookings: list[dict[str, str]],
    wall: float,
) -> DemoReport:
    said = [""] + [text for text, _ in script]
    turns: list[DemoTurn] = []
    for i, m in enumerate(result.turns):
        turns.append(
            DemoTurn(
                said[i] if i < len(said) else "",
                m.user_text,
                m.reply_text,
                m.heard_text,
                m.interrupted,
                m,
            )
        )
    return DemoReport(
        protocol,
        turns,
        result.history.to_dict()["messages"],
        snapshots[0] if snapshots else [],
        bookings,
        result.hung_up,
        phone,
        wall,
        dict(result.errors),
    )
