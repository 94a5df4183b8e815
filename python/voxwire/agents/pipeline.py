"""The voice agent: streaming STT -> LLM -> TTS on any voxwire call.

:class:`VoiceAgent` is a handler for every voxwire server (the WebSocket dialects,
AudioSocket, RTP, and anything else that hands it a :class:`voxwire.aio.CallSurface`)::

    agent = VoiceAgent(stt, llm, tts, system_prompt="You are a helpful receptionist.")
    async with serve(agent, codec_factory("twilio", agent.pipeline_rate), "0.0.0.0", 8080):
        ...

It is the thin asyncio driver of :class:`voxwire.voice.Conversation`: it moves audio,
text and time between the call, the services and the conversation, and carries out the
conversation's actions. Nothing in it decides anything about the dialogue.

Audio is converted once per direction. The call delivers caller audio at the
recogniser's rate (``pipeline_rate``, the codec's resampler); the synthesiser's audio is
converted to the line rate here, with one streaming resampler per reply, so nothing of
an interrupted reply leaks into the next. The played position after a clear comes from
the call's send clock (:meth:`voxwire.aio.CallSurface.playout_position`), mapped to the reply's
own seconds and so to its words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voxwire.aio.surface import CallSurface
from voxwire.errors import ServiceError
from voxwire.protocols.events import Audio, CallStarted, MarkPlayed, Stopped
from voxwire.resample import Resampler
from voxwire.security import redact_digits
from voxwire.services.base import (
    PCM,
    LanguageModel,
    LlmStream,
    Preparable,
    SpeechToText,
    SttStream,
    TextToSpeech,
    TtsStream,
)
from voxwire.services.fallback import (
    FallbackLlmStream,
    FallbackSttStream,
    FallbackTtsStream,
    Switch,
)
from voxwire.store.base import ConversationStore, StoredConversation, StoreError, call_key
from voxwire.voice.conversation import (
    Action,
    CancelLlm,
    CancelTts,
    Clear,
    Conversation,
    EndpointPolicy,
    EndTts,
    FinalizeStt,
    HangUp,
    Mark,
    Play,
    Retrieve,
    RunTool,
    SpeakText,
    StartLlm,
    StartTts,
    SttAudio,
    ToolOutcome,
    VoiceConfig,
)
from voxwire.voice.history import History
from voxwire.voice.metrics import TurnMetrics
from voxwire.voice.tools import Tool, ToolBox
from voxwire.voice.turns import TurnPolicy

__all__ = ["INTERRUPTED_TOOL", "AgentCallResult", "KnowledgeHook", "VoiceAgent"]

log = logging.getLogger("voxwire.agents")

INTERRUPTED_TOOL = (
    "unknown: the call's connection was lost while this tool ran; it may or may not have completed"
)
"""The result a resumed history gives a tool call that has none (its worker died
while the tool ran)."""

KnowledgeHook = Callable[[str], Awaitable[str]]
"""``await hook(user_text)`` returns context for the model (empty: none)."""


@dataclass
class AgentCallResult:
    """What one call's conversation did: its history, turns and failures."""

    history: History
    turns: list[TurnMetrics]
    errors: dict[str, int] = field(default_factory=dict)
    hung_up: bool = False
    drafts: dict[str, int] = field(default_factory=dict)
    """Preemptive replies: ``started``, ``used`` and ``discarded`` (see
    :attr:`voxwire.voice.conversation.VoiceConfig.preemptive`)."""
    started_at: float | None = None
    """When the stream started (wall clock, Unix seconds); None if it never did."""
    ended_by: str = "connection_lost"
    """How the call ended: ``caller_hung_up`` (the provider's stop), ``agent_hung_up``,
    ``server_closed`` (the server closed it: drain, a limit) or ``connection_lost``."""
    resumed: bool = False
    """The conversation was resumed from the agent's store (an earlier stream of the
    same call)."""
    connection: int = 1
    """Which stream of the call this was (2 and up after a resume)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "history": self.history.to_dict(),
            "turns": [t.as_dict() for t in self.turns],
            "errors": dict(self.errors),
            "hung_up": self.hung_up,
            "drafts": dict(self.drafts),
            "started_at": self.started_at,
            "ended_by": self.ended_by,
            "resumed": self.resumed,
            "connection": self.connection,
        }


class VoiceAgent:
    """Runs the voice pipeline on each call it is given; see the module docstring.

    Parameters
    ----------
    stt, llm, tts :
        The services (:mod:`voxwire.services.base` contracts).
    system_prompt : str
        The model's instructions.
    tools : sequence of Tool
        Tools the model may call (:func:`voxwire.voice.tools.tool`).
    knowledge : KnowledgeHook, optional
        Runs on every caller turn; what it returns is given to the model as context.
    policy : EndpointPolicy, optional
        End-of-turn policy (default :class:`voxwire.voice.turns.TurnPolicy`).
    config : VoiceConfig, optional
        Timings and texts of the conversation.
    history : callable, optional
        Makes each call's starting :class:`~voxwire.voice.history.History` (to resume a
        stored conversation); default: an empty one with ``system_prompt``.
    on_end : callable, optional
        Receives each call and its :class:`AgentCallResult` when the call ends.
    on_turn : callable, optional
        Receives each turn's :class:`~voxwire.voice.metrics.TurnMetrics` and the call's
        history as the turn's reply ends (played out, interrupted or failed); every turn
        is also logged then.
    log_text : callable or None, optional
        How the caller's transcript and the reply the caller heard appear in each turn's
        log line (and tool errors in the log): by default through
        :func:`voxwire.security.redact_digits` (card, account and phone numbers become
        ``[digits]``); ``None`` leaves the text out of the log.
    store : ConversationStore, optional
        Where each call's conversation is kept (:mod:`voxwire.store`): saved after every
        turn whose reply ended and every tool result, loaded when a call starts, so that
        a call whose stream is re-opened (on this worker or another) resumes its
        history; deleted when the call ends with the caller's or the agent's hang-up.
        A store that fails is logged and counted (``store.counts``), and the call goes
        on without it.
    store_timeout : float
        The longest a call's start waits for the store's answer (seconds).
    """

    def __init__(
        self,
        stt: SpeechToText,
        llm: LanguageModel,
        tts: TextToSpeech,
        *,
        system_prompt: str = "",
        tools: Sequence[Tool] = (),
        knowledge: KnowledgeHook | None = None,
        policy: EndpointPolicy | None = None,
        config: VoiceConfig | None = None,
        history: Callable[[], History] | None = None,
        on_end: Callable[[CallSurface, AgentCallResult], None] | None = None,
        on_turn: Callable[[TurnMetrics, History], None] | None = None,
        log_text: Callable[[str], str] | None = redact_digits,
        store: ConversationStore | None = None,
        store_timeout: float = 1.0,
    ) -> None:
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.system_prompt = system_prompt
        self.toolbox = ToolBox(tools)
        self.knowledge = knowledge
        self.policy: EndpointPolicy = policy if policy is not None else TurnPolicy()
        self.config = config or VoiceConfig()
        if knowledge is not None and not self.config.knowledge:
            self.config = VoiceConfig(**{**vars(self.config), "knowledge": True})
        self.history = history
        self.on_end = on_end
        self.on_turn = on_turn
        self.log_text = log_text
        self.store = store
        self.store_timeout = store_timeout

    @property
    def pipeline_rate(self) -> int:
        """The rate calls should deliver caller audio at: the recogniser's."""
        return self.stt.sample_rate

    async def __call__(self, call: CallSurface) -> None:
        """Hold the conversation on ``call`` until it ends (a server handler)."""
        run = _AgentCall(self, call)
        try:
            await run.run()
        finally:
            run.report_turns()
            result = run.result()
            if self.on_end is not None:
                self.on_end(call, result)


def _ident(call: CallSurface) -> str:
    return call.started.stream_id if call.started else "(not started)"


@dataclass
class _Placed:
    line_pos: int  # where the audio begins in the call's line samples
    offset: float  # where it begins in the reply's audio, seconds
    samples: int  # line samples


class _ReplyIO:
    """One reply's service streams, tasks and line-side bookkeeping."""

    def __init__(self, reply: int) -> None:
        self.reply = reply
        self.llm: LlmStream | None = None
        self.llm_task: asyncio.Task[None] | None = None
        self.tts: TtsStream | None = None
        self.tts_task: asyncio.Task[None] | None = None
        self.resampler: Resampler[np.int16] | None = None
        self.next_offset: float | None = None
        self.placed: list[_Placed] = []
        self.marks: dict[str, tuple[int, float]] = {}  # name -> (line position, sent at)
        self.echo: tuple[int, float] | None = None  # last mark the phone played: (pos, when)
        self.half_rtt = 0.0  # half the round trip to the phone, from the start mark
        self.start_position = -1  # where the reply's start mark stands

    def phone_position(self, send_clock: int, now: float, line_rate: int) -> int:
        """Where the phone's playout is at ``now``, in line samples.

        The send clock's estimate, held back to what the last mark the phone echoed
        implies where the phone runs behind it (a slow path or a provider's buffer
        delays its playout; the echo shows by how much). An echo left the phone half a
        round trip ago (measured on the reply's start mark, which the phone echoes as it
        arrives), so it is extrapolated from then.
        """
        if self.echo is None:
            return send_clock
        position, when = self.echo
        ahead = int((now - when + self.half_rtt) * line_rate)
        return max(position, min(send_clock, position + ahead))

    def offset_at(self, line_pos: int, line_rate: int) -> float:
        """The reply second that was playing at line sample ``line_pos``."""
        offset = 0.0
        for p in self.placed:
            if p.line_pos > line_pos:
                break
            offset = p.offset + min(line_pos - p.line_pos, p.samples) / line_rate
        return offset


class _AgentCall:
    def __init__(self, agent: VoiceAgent, call: CallSurface) -> None:
        self.agent = agent
        self.call = call
        self.loop = asyncio.get_running_loop()
        history = agent.history() if agent.history is not None else History(agent.system_prompt)
        self.conversation = Conversation(
            agent.stt.sample_rate,
            agent.policy,
            history,
            tools=agent.toolbox.specs,
            config=agent.config,
        )
        self.stt: SttStream | None = None
        self.stt_task: asyncio.Task[None] | None = None
        self.replies: dict[int, _ReplyIO] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.inbound: Resampler[np.int16] | None = None
        self.hung_up = False
        self.caller_was_speaking = False
        self.line_rate = 0
        self.stt_failures = 0
        # the store: this call's key, what was stored before this stream, the saves
        self.key: str | None = None
        self.started_at: float | None = None
        self.ended_by = "connection_lost"
        self.resumed = False
        self.connection = 1
        self.turns_before = 0  # turns of earlier streams of the call
        self.turns_ended = 0  # turns of this stream whose reply ended
        self.saving: asyncio.Task[None] | None = None
        self.save_again = False
        self.store_done = False  # the call's last save (or its deletion) is made

    def result(self) -> AgentCallResult:
        c = self.conversation
        return AgentCallResult(
            c.history,
            c.turns,
            dict(c.errors),
            self.hung_up,
            dict(c.drafts),
            started_at=self.started_at,
            ended_by=self.ended_by,
            resumed=self.resumed,
            connection=self.connection,
        )

    # --- the call's events -----------------------------------------------------------

    async def run(self) -> None:
        self.call.on_say = self.say
        try:
            async for event in self.call:
                if self.stt is None and isinstance(event, Audio | CallStarted):
                    await self._resume()
                now = self.loop.time()
                if isinstance(event, Audio):
                    if self.stt is None:
                        self._open(event.sample_rate, now)
                    self.apply(self.conversation.audio(self._inbound(event), now))
                    speaking = self.conversation.caller_speaking
                    if speaking and not self.caller_was_speaking:
                        # a reply will be wanted soon: re-open a connection the services'
                        # servers may have closed while idle (a no-op when recently used)
                        self._spawn(self._prepare())
                    self.caller_was_speaking = speaking
                elif isinstance(event, MarkPlayed):
                    if not event.cleared:
                        self._echoed(event.name, now)
                    self.apply(
                        self.conversation.mark_played(event.name, now, cleared=event.cleared)
                    )
                elif isinstance(event, CallStarted):
                    if self.stt is None:
                        self._open(event.media_format.sample_rate, now)
                elif isinstance(event, Stopped):
                    self.ended_by = "caller_hung_up"
                    break
                if self.hung_up:
                    break
            if self.hung_up:
                self.ended_by = "agent_hung_up"
            elif self.ended_by != "caller_hung_up" and (
                getattr(self.call, "close_code", None) is not None
            ):
                self.ended_by = "server_closed"
        finally:
            self.call.on_say = None
            self.apply(self.conversation.close(self._heard_of_live()))
            await self._shutdown()
            await self._finish_store()

    def say(self, text: str) -> None:
        """Say ``text`` into the call (:meth:`Conversation.say`); ValueError when refused."""
        if self.stt is None:
            raise ValueError("the call's conversation has not started yet")
        self.apply(self.conversation.say(text, self.loop.time()))

    # --- the store -------------------------------------------------------------------

    async def _resume(self) -> None:
        """Once, as the call starts: key it, and load its stored conversation."""
        started = self.call.started
        if self.started_at is not None or started is None:
            return
        self.started_at = time.time()
        store = self.agent.store
        if store is None:
            return
        name = self.call.codec.name
        try:
            self.key = call_key(name, started)
            stored = await asyncio.wait_for(store.load(self.key), self.agent.store_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a store that fails never fails the call
            if isinstance(exc, asyncio.TimeoutError):
                store.counts.note("load_failed")
            log.warning("%s call %r: loading its conversation failed: %r", name, self.key, exc)
            return
        if stored is None:
            return
        history = self.conversation.history
        for message in stored.history.messages:
            history.append(message)
        history.close_open_tool_calls(INTERRUPTED_TOOL)
        self.resumed = True
        self.connection = stored.connections + 1
        self.turns_before = stored.turns
        log.info(
            "%s call %r resumed: %d message(s) of %d turn(s), stream %d",
            name,
            self.key,
            len(stored.history.messages),
            stored.turns,
            self.connection,
        )

    def _save(self) -> None:
        """Save the conversation as it is now, after any save in flight (one at a time,
        the newest state last)."""
        if self.agent.store is None or self.key is None or self.store_done:
            return
        if self.saving is not None and not self.saving.done():
            self.save_again = True
            return
        self.saving = asyncio.ensure_future(self._write())

    def _snapshot(self) -> StoredConversation:
        history = History.from_dict(self.conversation.history.to_dict())
        return StoredConversation(
            history,
            turns=self.turns_before + self.turns_ended,
            connections=self.connection,
            protocol=self.call.codec.name,
        )

    async def _write(self) -> None:
        store = self.agent.store
        assert store is not None
        assert self.key is not None
        while True:
            self.save_again = False
            try:
                await store.save(self.key, self._snapshot())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, StoreError):
                    store.counts.note("save_failed")
                log.warning(
                    "%s call %r: saving its conversation failed: %r",
                    self.call.codec.name,
                    self.key,
                    exc,
                )
            if not self.save_again:
                return

    async def _finish_store(self) -> None:
        """The call ended: wait for the last save; forget the conversation when the
        call is over for good (a hang-up), keep it when the stream may come back."""
        store = self.agent.store
        if store is None or self.key is None:
            return
        if self.ended_by not in ("caller_hung_up", "agent_hung_up"):
            self._save()
        self.store_done = True
        if self.saving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.saving, 2 * self.agent.store_timeout)
        if self.ended_by in ("caller_hung_up", "agent_hung_up"):
            try:
                await asyncio.wait_for(store.delete(self.key), self.agent.store_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "%s call %r: forgetting its conversation failed: %r",
                    self.call.codec.name,
                    self.key,
                    exc,
                )

    def _heard_of_live(self) -> float | None:
        """How far the reply under way had played when the call ended (None: nothing)."""
        live = self.conversation.live_reply
        io = self.replies.get(live) if live is not None else None
        if io is None or self.call.stream is None:
            return None
        phone = self._phone_position(io, self.loop.time())
        return io.offset_at(phone, self.line_rate) if io.placed else None

    def _phone_position(self, io: _ReplyIO, now: float) -> int:
        """Where the phone's playout is, in line samples: the estimate, and never less than
        what the phone plays whatever happens (on RTP, every packet already sent)."""
        estimate = io.phone_position(self.call.playout_position(now), now, self.line_rate)
        return max(estimate, self.call.committed_samples)

    def _open(self, rate: int, now: float) -> None:
        started = self.call.started
        self.line_rate = started.media_format.sample_rate if started else rate
        self._open_stt()
        self._spawn(self._prepare())
        self.apply(self.conversation.start(now, resumed=self.resumed))

    async def _prepare(self) -> None:
        """Warm the services up (pre-connect) so the turn to come pays no handshake: at
        call start, and again whenever the caller starts to speak."""
        for kind, service in (("llm", self.agent.llm), ("tts", self.agent.tts)):
            if isinstance(service, Preparable):
                try:
                    await service.prepare()
                except Exception as exc:  # the first turn tries again, or falls back
                    log.warning(
                        "%s call %r: preparing %s failed: %s",
                        self.call.codec.name,
                        _ident(self.call),
                        kind,
                        exc,
                    )

    def _watch(self, stream: object, reply: int | None) -> None:
        """Report the switches of a fallback chain's stream to the conversation."""
        if isinstance(stream, FallbackLlmStream | FallbackTtsStream | FallbackSttStream):
            stream.on_switch = lambda switch: self._switched(reply, switch)

    def _switched(self, reply: int | None, switch: Switch) -> None:
        log.warning(
            "%s call %r: fallback %s", self.call.codec.name, _ident(self.call), switch.describe()
        )
        self.apply(
            self.conversation.service_switched(
                reply, switch.error, switch.to_name, self.loop.time()
            )
        )

    def _inbound(self, event: Audio) -> PCM:
        rate = self.agent.stt.sample_rate
        if event.sample_rate == rate:
            return event.pcm
        if self.inbound is None or self.inbound.in_rate != event.sample_rate:
            self.inbound = Resampler(event.sample_rate, rate)
        return self.inbound.process(event.pcm)

    # --- carrying out actions --------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            self._do(action)
        self._arm()
        if self.conversation.closed:
            self.report_turns()

    def report_turns(self) -> None:
        """Log the turns whose replies ended, and hand them to ``on_turn``."""
        closed = self.conversation.closed
        saved = False
        while closed:
            turn = closed.pop(0)
            self.turns_ended += 1
            log.info(
                "%s call %r %s",
                self.call.codec.name,
                _ident(self.call),
                turn.log_line(self.agent.log_text),
            )
            if self.agent.on_turn is not None:
                self.agent.on_turn(turn, self.conversation.history)
            saved = True
        if saved:
            self._save()

    def _do(self, action: Action) -> None:
        if isinstance(action, SttAudio):
            if self.stt is not None:
                self.stt.push(action.pcm)
        elif isinstance(action, Play):
            self._play(action)
        elif isinstance(action, Mark):
            self._mark(action)
        elif isinstance(action, Clear):
            self._clear(action)
        elif isinstance(action, SpeakText):
            io = self.replies.get(action.reply)
            if io is not None and io.tts is not None:
                io.tts.push(action.text)
                io.tts.flush()
        elif isinstance(action, StartLlm):
            self._start_llm(action)
        elif isinstance(action, StartTts):
            self._start_tts(action.reply)
        elif isinstance(action, EndTts):
            io = self.replies.get(action.reply)
            if io is not None and io.tts is not None:
                io.tts.end_input()
        elif isinstance(action, CancelLlm):
            self._cancel_llm(action.reply)
        elif isinstance(action, CancelTts):
            self._cancel_tts(action.reply)
        elif isinstance(action, RunTool):
            self._spawn(self._tool(action))
        elif isinstance(action, Retrieve):
            self._spawn(self._retrieve(action))
        elif isinstance(action, FinalizeStt):
            if self.stt is not None:
                self.stt.finalize()
        elif isinstance(action, HangUp):
            self.hung_up = True
            self._spawn(self.call.close(1000, action.reason))

    def _io(self, reply: int) -> _ReplyIO:
        io = self.replies.get(reply)
        if io is None:
            io = self.replies[reply] = _ReplyIO(reply)
            # only the live reply and one before it (tools still running) are kept
            for old in [k for k in self.replies if k < reply - 1]:
                del self.replies[old]
        return io

    def _play(self, action: Play) -> None:
        if self.call.stream is None:
            return
        io = self._io(action.reply)
        line_rate = self.line_rate
        pcm = action.pcm
        if action.sample_rate != line_rate:
            if (
                io.resampler is None
                or io.next_offset is None
                or (abs(action.offset - io.next_offset) > 0.5 / action.sample_rate)
            ):
                io.resampler = Resampler(action.sample_rate, line_rate)
            pcm = io.resampler.process(pcm)
        io.next_offset = action.offset + len(action.pcm) / action.sample_rate
        io.placed.append(_Placed(self.call.queued_total, action.offset, len(pcm)))
        if len(pcm):
            self.call.play(pcm, line_rate)

    def _mark(self, action: Mark) -> None:
        if self.call.stream is None:
            return
        io = self.replies.get(action.reply)
        if action.final and io is not None and io.resampler is not None:
            # the resampler holds the last few ms of the reply: they play before the mark
            tail = io.resampler.flush()
            io.resampler = None
            io.next_offset = None
            if len(tail) and io.placed:
                io.placed[-1].samples += len(tail)
                self.call.play(tail, self.line_rate)
        if io is not None:
            self.call.flush()
            position = self.call.queued_total
            if not io.placed:
                io.start_position = position
            io.marks[action.name] = (position, self.loop.time())
        self.call.mark(action.name)

    def _echoed(self, name: str, now: float) -> None:
        for io in self.replies.values():
            entry = io.marks.pop(name, None)
            if entry is not None:
                position, sent = entry
                if io.echo is None and position == io.start_position:
                    io.half_rtt = max(0.0, (now - sent) / 2)
                io.echo = (position, now)
                return

    def _clear(self, action: Clear) -> None:
        now = self.loop.time()
        io = self.replies.get(action.reply)
        offset = 0.0
        if io is not None and self.call.stream is not None:
            phone = self._phone_position(io, now)
            offset = io.offset_at(phone, self.line_rate)
            io.resampler = None
            io.next_offset = None
            io.echo = None
            io.marks.clear()
        if self.call.stream is not None:
            self.call.clear()
        self.apply(self.conversation.heard(action.reply, offset, now))

    # --- services -------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _open_stt(self) -> None:
        self.stt = self.agent.stt.stream()
        self._watch(self.stt, None)
        self.stt_task = self._spawn(self._read_stt(self.stt))

    async def _read_stt(self, stream: SttStream) -> None:
        try:
            async for result in stream:
                self.apply(self.conversation.transcript(result, self.loop.time()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failing recogniser never ends the call
            error = exc if isinstance(exc, ServiceError) else ServiceError("stt", "error", str(exc))
            log.warning("%s call %r: STT failed: %s", self.call.codec.name, _ident(self.call), exc)
            self.apply(self.conversation.stt_failed(error, self.loop.time()))
            self.stt_failures += 1
            if self.stt_failures <= 5 and not self.conversation.ended:
                await asyncio.sleep(0.2 * self.stt_failures)
                with contextlib.suppress(Exception):
                    await stream.aclose()
                self._open_stt()

    def _start_llm(self, action: StartLlm) -> None:
        io = self._io(action.reply)
        self._cancel_llm(action.reply)
        try:
            io.llm = self.agent.llm.complete(action.messages, action.tools)
        except Exception as exc:
            self._llm_failed(action.reply, exc)
            return
        self._watch(io.llm, action.reply)
        io.llm_task = self._spawn(self._read_llm(action.reply, io.llm))

    async def _read_llm(self, reply: int, stream: LlmStream) -> None:
        try:
            async for event in stream:
                self.apply(self.conversation.llm_event(reply, event, self.loop.time()))
            self.apply(self.conversation.llm_done(reply, self.loop.time()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._llm_failed(reply, exc)

    def _llm_failed(self, reply: int, exc: Exception) -> None:
        error = exc if isinstance(exc, ServiceError) else ServiceError("llm", "error", str(exc))
        log.warning("%s call %r: LLM failed: %s", self.call.codec.name, _ident(self.call), exc)
        self.apply(self.conversation.llm_failed(reply, error, self.loop.time()))

    def _cancel_llm(self, reply: int) -> None:
        io = self.replies.get(reply)
        if io is None or io.llm is None:
            return
        stream, io.llm = io.llm, None
        if io.llm_task is not None:
            io.llm_task.cancel()
            io.llm_task = None
        self._spawn(_quiet_close(stream))

    def _start_tts(self, reply: int) -> None:
        io = self._io(reply)
        try:
            io.tts = self.agent.tts.stream()
        except Exception as exc:
            self._tts_failed(reply, exc)
            return
        self._watch(io.tts, reply)
        io.tts_task = self._spawn(self._read_tts(reply, io.tts))

    async def _read_tts(self, reply: int, stream: TtsStream) -> None:
        rate = self.agent.tts.sample_rate
        try:
            async for chunk in stream:
                self.apply(self.conversation.tts_audio(reply, chunk, self.loop.time(), rate))
            self.apply(self.conversation.tts_done(reply, self.loop.time()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._tts_failed(reply, exc)

    def _tts_failed(self, reply: int, exc: Exception) -> None:
        error = exc if isinstance(exc, ServiceError) else ServiceError("tts", "error", str(exc))
        log.warning("%s call %r: TTS failed: %s", self.call.codec.name, _ident(self.call), exc)
        self.apply(self.conversation.tts_failed(reply, error, self.loop.time()))

    def _cancel_tts(self, reply: int) -> None:
        io = self.replies.get(reply)
        if io is None or io.tts is None:
            return
        stream, io.tts = io.tts, None
        if io.tts_task is not None:
            io.tts_task.cancel()
            io.tts_task = None
        self._spawn(_quiet_close(stream))

    async def _tool(self, action: RunTool) -> None:
        result = await self.agent.toolbox.run(action.call)
        outcome = ToolOutcome(
            result.call_id, result.name, result.content, result.error, result.seconds
        )
        if result.error:
            log.warning(
                "%s call %r: tool %s: %s",
                self.call.codec.name,
                _ident(self.call),
                result.name,
                self.agent.log_text(result.content[:200]) if self.agent.log_text else "(error)",
            )
        self.apply(self.conversation.tool_result(action.reply, outcome, self.loop.time()))
        self._save()  # a tool that ran is never run again after a resume

    async def _retrieve(self, action: Retrieve) -> None:
        hook = self.agent.knowledge
        context = ""
        if hook is not None:
            try:
                context = await asyncio.wait_for(
                    hook(action.query), self.agent.config.retrieve_timeout
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "%s call %r: knowledge hook failed: %r",
                    self.call.codec.name,
                    _ident(self.call),
                    exc,
                )
        self.apply(self.conversation.retrieved(action.reply, context, self.loop.time()))

    # --- time ------------------------------------------------------------------------

    def _arm(self) -> None:
        when = self.conversation.get_timer()
        if self.timer is not None:
            if when is not None and abs(self.timer.when() - when) < 1e-6:
                return
            self.timer.cancel()
            self.timer = None
        if when is not None and not self.conversation.ended:
            self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.apply(self.conversation.handle_timer(self.loop.time()))

    async def _shutdown(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for reply in list(self.replies):
            self._cancel_llm(reply)
            self._cancel_tts(reply)
        if self.stt is not None:
            self.stt.end_input()
            self._spawn(_quiet_close(self.stt))
        if self.stt_task is not None:
            self.stt_task.cancel()
        # tools still running (a booking) get a moment to finish; then everything stops
        pending = [task for task in self.tasks if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for task in list(self.tasks):
            task.cancel()


async def _quiet_close(stream: LlmStream | TtsStream | SttStream) -> None:
    with contextlib.suppress(Exception):
        await stream.aclose()
