"""The conversation core: turns, replies, barge-in and the history, sans-I/O.

:class:`Conversation` runs one call's conversation. It never awaits, reads a clock or
touches a service: the driver (:mod:`voxwire.agents.pipeline`) feeds it what happened,
each with ``now``, and carries out the :data:`Action` values it returns. Tests drive it
sample by sample on a virtual clock.

Inputs: caller audio at the pipeline rate (:meth:`~Conversation.audio`), transcripts,
the model's text and tool calls, synthesised audio, tool results, marks the phone
played, the played position after a clear (:meth:`~Conversation.heard`) and timers.
Outputs: audio for the speech recogniser, requests to the model, the synthesiser and the
tools, and what the phone must do (play, mark, clear, hang up).

Listening and the end of a turn
-------------------------------
Caller audio goes through voxwire's VAD (with the turn policy's hangover), after the
automatic gain control (``VoiceConfig.agc``, on by default, boost only: it lifts quiet
lines and leaves loud ones alone; it holds its gain while a reply plays, so the reply's
echo never sets the caller's level). When the VAD
ends an utterance the turn ends after ``policy.delay(text)`` more seconds, ``text`` being
the transcript so far: a complete sentence is answered at once, text that stops on
"and", "um" or a digit waits longer (:mod:`voxwire.voice.turns`). Speech before then
continues the turn. A final transcript that has not come by then is asked for
(:class:`FinalizeStt`) and waited for at most ``final_timeout``.

Thinking and speaking
---------------------
The reply starts the model at once; its text is cut into sentences
(:mod:`voxwire.voice.text`) and each sentence goes to the synthesiser as soon as it is
settled, so the first sentence is spoken while the model still writes the rest. Audio
is played as it comes. Tool calls are run when the model's round ends; their results go
back to the model for the next round (at most ``max_tool_rounds``); a tool that runs
longer than ``filler_after`` makes the agent say ``filler_text``.

Preemptive replies
------------------
With ``preemptive`` on, the reply is prepared while the turn policy still waits: when
the VAD ends an utterance whose final transcript is in (no interim words pending) and the
end of the turn is ``preemptive_min_wait`` to ``preemptive_max_wait`` away (a longer wait
means the words say the caller is not done), the model and the synthesiser start at
once on that text, and their audio is held. When the turn ends with the same
text, the held audio plays at once: the model's and the synthesiser's first-result times
are hidden inside the wait. If the caller goes on (the VAD hears speech) or the
transcript changes, the draft is cancelled and its messages leave the history; the turn
goes on as without it. A draft never runs a tool: its tool calls wait for the end of
the turn. The cost is the model tokens and synthesised characters of drafts that are
thrown away (``Conversation.drafts`` counts them).

Barge-in and what the caller heard
----------------------------------
While a reply plays, caller speech stops it: after ``pause_frames`` frames of speech
that is not the agent's own voice coming back (the echo gate, below) the audio is
stopped at the phone at once (:class:`Clear`) and the driver reports how far the reply
had played (:meth:`~Conversation.heard`). If the caller goes on speaking for
``confirm_s`` seconds, or the recogniser hears a word that is not a filler, the barge-in
is confirmed: the model and the synthesiser are cancelled and the assistant turn in the
history is cut to **the words whose audio had started playing** (TTS word timings; an
estimate by characters where the engine gives none). Tool calls that ran stay, with
their results. If the sound stops sooner with no word heard (a cough, a click, a
"mm-hm"), it was a false interruption: the reply resumes from the start of the word it
was stopped in, so the caller hears that word whole.

The echo gate: while the agent speaks, a caller frame whose level is more than
``echo_margin_db`` below the loudest reply audio played in the last ``max_echo_delay``
seconds is taken as the reply coming back over the line (speakerphones, hybrids), not
as the caller. Such frames never start a barge-in and reach the recogniser as silence.
"""

from __future__ import annotations

import bisect
import inspect
import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voxwire.agc import Agc
from voxwire.errors import ServiceError
from voxwire.services.base import (
    PCM,
    ChatMessage,
    LlmEvent,
    SpeechAudio,
    TextDelta,
    ToolCall,
    ToolSpec,
    Transcript,
    Usage,
    Word,
)
from voxwire.vad import SpeechEnd, SpeechStart, Vad
from voxwire.voice.history import History
from voxwire.voice.metrics import ToolRecord, TurnMetrics
from voxwire.voice.text import SentenceChunker
from voxwire.voice.turns import Prosody, prosody

__all__ = [
    "END_CALL",
    "MAX_SAYS_WAITING",
    "MAX_SAY_CHARS",
    "Action",
    "CancelLlm",
    "CancelTts",
    "Clear",
    "Conversation",
    "EndTts",
    "EndpointPolicy",
    "FinalizeStt",
    "HangUp",
    "Mark",
    "Play",
    "Retrieve",
    "RunTool",
    "SpeakText",
    "StartLlm",
    "StartTts",
    "SttAudio",
    "ToolOutcome",
    "VoiceConfig",
]

END_CALL = "end_call"
"""The built-in tool a model calls to end the call after its reply has played."""

END_CALL_SPEC = ToolSpec(
    END_CALL,
    "End the phone call after saying goodbye. Call it only when the caller is done.",
)


def _dbfs(mean_square: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Level of 16-bit audio in dB relative to full scale, from its mean square."""
    result: npt.NDArray[np.float32] = 10 * np.log10(mean_square + 1.0) - 90.309
    return result


_NO_SAMPLES: npt.NDArray[np.int16] = np.zeros(0, np.int16)
_NO_SAMPLES.flags.writeable = False
MAX_SAY_CHARS = 2000
"""Longest text :meth:`Conversation.say` takes."""
MAX_SAYS_WAITING = 8
"""Texts :meth:`Conversation.say` holds while a reply is under way."""

_GAP_FRAMES = 4  # 80 ms without speech while paused ends one sound
_SOUNDING_DBFS = -50.0  # reply audio louder than this shows the echo path when it returns

_FILLERS = frozenset(("um", "uh", "erm", "hmm", "mm", "mhm", "uh-huh", "mm-hm", "ah", "oh"))
_WORD = re.compile(r"[\w'\u2019-]+")


# --- actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class SttAudio:
    """Push this audio (pipeline rate) to the speech recogniser."""

    pcm: PCM


@dataclass(frozen=True, slots=True)
class FinalizeStt:
    """Ask the recogniser for the final transcript of the audio so far."""


@dataclass(frozen=True, slots=True)
class Retrieve:
    """Run the knowledge hook for ``query``; answer with :meth:`Conversation.retrieved`."""

    reply: int
    query: str


@dataclass(frozen=True, slots=True, eq=False)
class StartLlm:
    """Start a completion for reply ``reply``; feed its events back."""

    reply: int
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...]


@dataclass(frozen=True, slots=True)
class CancelLlm:
    """Stop reply ``reply``'s completion now."""

    reply: int


@dataclass(frozen=True, slots=True)
class StartTts:
    """Open the synthesis stream of reply ``reply``."""

    reply: int


@dataclass(frozen=True, slots=True)
class SpeakText:
    """Push ``text`` to reply ``reply``'s synthesis stream and flush it."""

    reply: int
    text: str


@dataclass(frozen=True, slots=True)
class EndTts:
    """No more text for reply ``reply``: end its synthesis input."""

    reply: int


@dataclass(frozen=True, slots=True)
class CancelTts:
    """Stop reply ``reply``'s synthesis now."""

    reply: int


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run ``call`` for reply ``reply``; answer with :meth:`Conversation.tool_result`."""

    reply: int
    call: ToolCall


@dataclass(frozen=True, slots=True, eq=False)
class Play:
    """Queue reply audio (``sample_rate``) for the phone.

    ``offset`` is where ``pcm`` starts in the reply's audio, in seconds; consecutive
    plays of a reply continue each other unless a resume starts over at an earlier word.
    """

    reply: int
    pcm: PCM
    sample_rate: int
    offset: float


@dataclass(frozen=True, slots=True)
class Mark:
    """Queue a mark after the audio queued so far; report it with ``mark_played``.

    ``final`` marks the end of a reply's audio: flush what the driver holds of it first.
    """

    name: str
    reply: int = 0
    final: bool = False


@dataclass(frozen=True, slots=True)
class Clear:
    """Stop reply ``reply`` at the phone now; then report :meth:`Conversation.heard`."""

    reply: int


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call."""

    reason: str


Action = (
    SttAudio
    | FinalizeStt
    | Retrieve
    | StartLlm
    | CancelLlm
    | StartTts
    | SpeakText
    | EndTts
    | CancelTts
    | RunTool
    | Play
    | Mark
    | Clear
    | HangUp
)
"""What :class:`Conversation` asks its driver to do."""


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A tool call's result, as the driver reports it."""

    call_id: str
    name: str
    content: str
    error: bool = False
    seconds: float = 0.0


def _takes_prosody(policy: object) -> bool:
    """Whether ``policy.delay`` takes a second argument, ``prosody``."""
    try:
        return "prosody" in inspect.signature(policy.delay).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        return False


class EndpointPolicy(Protocol):
    """How long to wait after the VAD's end of speech (:class:`voxwire.voice.turns.TurnPolicy`).

    A policy whose ``delay`` also takes ``prosody`` (a :class:`~voxwire.voice.turns.
    Prosody` or None) is given how the speech ended (``VoiceConfig.prosody``)."""

    @property
    def hangover_ms(self) -> int: ...

    def delay(self, text: str) -> float: ...


@dataclass
class VoiceConfig:
    """The conversation's settings (seconds unless named otherwise)."""

    final_timeout: float = 0.8
    """Longest wait for the final transcript after the end of a turn."""
    pause_frames: int = 2
    """Frames (20 ms) of caller speech over a reply before its audio is stopped."""
    confirm_s: float = 0.3
    """Caller speech that confirms a barge-in (shorter sound resumes the reply)."""
    resume_after_s: float = 0.25
    """Silence after a pause at which a false interruption resumes the reply."""
    echo_return_db: float = 16.0
    """How far below the reply its echo is taken to come back before it is measured."""
    echo_margin_db: float = 6.0
    """Caller frames up to this much louder than the measured echo are still echo."""
    max_echo_delay: float = 0.5
    """Longest delay of the reply's echo coming back."""
    max_tool_rounds: int = 3
    """Model rounds with tool calls in one reply."""
    filler_after: float = 1.0
    """A tool running this long makes the agent say ``filler_text`` (0: never)."""
    filler_text: str = "One moment, please."
    apology_text: str = "Sorry, I had a problem there. Could you say that again?"
    """Said when a service fails during a reply."""
    llm_timeout: float = 8.0
    """Longest wait for the model's first event (and between events)."""
    tts_timeout: float = 5.0
    """Longest wait for the synthesiser's first audio after text was sent."""
    retrieve_timeout: float = 0.3
    """Longest wait for the knowledge hook before the model starts without it."""
    max_user_chars: int = 2000
    """Longest transcript of one caller turn kept (longer is cut)."""
    greeting: str = ""
    """Said when the call starts (empty: the agent waits for the caller)."""
    resume_greeting: str = ""
    """Said instead of ``greeting`` when the call resumes a stored conversation (its
    stream was re-opened; empty: the agent waits for the caller)."""
    knowledge: bool = False
    """Run the knowledge hook (:class:`Retrieve`) on every caller turn."""
    preemptive: bool = False
    """Prepare the reply while the turn policy still waits (see "Preemptive replies")."""
    preemptive_min_wait: float = 0.15
    """Start a preemptive reply only when the end of the turn is at least this far off."""
    preemptive_max_wait: float = 0.75
    """... and at most this far: a longer wait means the words say the caller is not done
    (a trailing "and", "um", a digit run), and a draft would mostly be thrown away."""
    agc: bool = True
    """Put the caller's audio through :class:`voxwire.Agc` (automatic gain control, no
    added latency) before the VAD and the recogniser. On by default, set to boost only
    (``agc_min_gain_db=0``): it lifts quiet lines (-40 to -20 dBFS peak), where it raised
    the offline recogniser's word accuracy, and leaves speech at or above its -26 dBFS
    target as it is, where gain control did not help (``docs/agc.md``)."""
    prosody: bool = False
    """Give the turn policy how the caller's speech ended (its final pitch,
    :func:`voxwire.voice.turns.prosody` of the last 400 ms before the VAD's end of speech)
    where the policy takes it (``TurnPolicy.delay(text, prosody)``): on plain transcripts
    a final fall answers a clause that could end, a level or rising end waits
    (``docs/turn-taking.md``). Costs one pitch track of 400 ms per end of speech. Off by
    default: it halves the cut-offs on plain transcripts but waits 1-1.5 s where a caller
    ends statements rising or the recogniser garbles a question's verb."""
    agc_max_gain_db: float = 30.0
    """The gain control's largest gain (dB)."""
    agc_min_gain_db: float = 0.0
    """The gain control's smallest gain (dB): 0 never attenuates."""


# --- the reply ------------------------------------------------------------------------


@dataclass
class _Spoken:
    """A piece of text sent to the synthesiser, and the history message it belongs to."""

    message: int
    text: str
    start: int  # char offset in the reply's spoken text
    audio_start: float | None = None  # reply seconds where its audio began
    audio_end: float | None = None  # reply seconds where its audio ended


@dataclass
class _Reply:
    id: int
    metrics: TurnMetrics
    chunker: SentenceChunker
    round: int = 0
    llm_open: bool = False
    llm_deadline: float | None = None
    tts_open: bool = False
    tts_ended: bool = False
    tts_deadline: float | None = None
    round_message: int | None = None  # history index of this round's assistant message
    round_calls: list[ToolCall] = field(default_factory=list)
    pending_tools: dict[str, ToolCall] = field(default_factory=dict)
    filler_at: float | None = None
    filler_said: bool = False
    end_call: bool = False
    retrieving: bool = False
    retrieve_deadline: float | None = None
    context: str = ""
    spoken: list[_Spoken] = field(default_factory=list)
    flat: str = ""  # all spoken text, in order
    # each word spoken: (start s, end s, char end in ``flat``)
    words: list[tuple[float, float, int]] = field(default_factory=list)
    audio: list[PCM] = field(default_factory=list)
    audio_samples: int = 0
    rate: int = 0
    played_samples: int = 0  # reply samples handed to Play
    playing: bool = False  # reply audio may be at the phone
    paused: bool = False
    started_audio: bool = False
    end_marked: bool = False
    apologised: bool = False
    failed: bool = False
    messages: list[int] = field(default_factory=list)  # assistant messages it added
    user_message: int | None = None
    # a preemptive reply, prepared before the end of the turn was confirmed
    draft: bool = False
    held_calls: list[ToolCall] | None = None  # its tool calls, run once it is confirmed
    held_done: bool = False  # it finished with nothing to say


# --- the conversation ------------------------------------------------------------------


class Conversation:
    """One call's conversation; see the module docstring.

    Parameters
    ----------
    rate : int
        Rate of the caller audio given to :meth:`audio` (the recogniser's rate), one the
        VAD accepts (8000, 16000, 24000, 32000 or 48000 Hz).
    policy : EndpointPolicy
        The end-of-turn policy (:class:`voxwire.voice.turns.TurnPolicy`).
    history : History
        The conversation so far (its system prompt included); kept up to date here.
    tools : sequence of ToolSpec
        Tools offered to the model (``end_call`` is always added).
    config : VoiceConfig
        Timings and texts.
    """

    def __init__(
        self,
        rate: int,
        policy: EndpointPolicy,
        history: History,
        *,
        tools: Sequence[ToolSpec] = (),
        config: VoiceConfig | None = None,
    ) -> None:
        self.rate = rate
        self.policy = policy
        self.history = history
        self.config = config or VoiceConfig()
        self.tools = (*tools, END_CALL_SPEC)
        self.vad = Vad(rate, hangover_ms=policy.hangover_ms)
        #: the caller's gain control (``config.agc``), or None
        self.agc: Agc | None = None
        if self.config.agc:
            self.agc = Agc(
                rate,
                max_gain_db=self.config.agc_max_gain_db,
                min_gain_db=self.config.agc_min_gain_db,
            )
        self._frame = self.vad.frame_samples
        self._pending = _NO_SAMPLES
        self._fed = 0  # samples given to the VAD
        #: whether the policy is given the pitch at each end of speech (config.prosody)
        self._prosodic = self.config.prosody and _takes_prosody(policy)
        #: (first sample, audio) of the recent messages: enough for the pitch before a
        #: speech end, which the VAD reports its hangover late
        self._recent: deque[tuple[int, PCM]] = deque()
        self._recent_samples = int((0.5 + policy.hangover_ms / 1000) * rate)
        self._end_prosody: Prosody | None = None
        #: every turn, in order
        self.turns: list[TurnMetrics] = []
        #: turns whose reply ended (played out, interrupted or failed) since the driver
        #: last emptied the list: the driver logs them
        self.closed: list[TurnMetrics] = []
        self.state = "listening"
        self.ended = False
        # the caller's open turn
        self._user_open = False  # the VAD is in the caller's speech
        self._turn_texts: list[str] = []  # final transcripts of the open turn
        self._interim = ""
        self._turn_started = False
        self._vad_end_at: float | None = None
        self._speech_end: float | None = None
        self._endpoint_at: float | None = None
        self._final_wait: float | None = None
        self._final_at: float | None = None  # when the open turn's last final came
        # the reply
        self._next_reply = 0
        self._reply: _Reply | None = None
        self._carry: _Reply | None = None  # a reply ended by a barge-in with tools running
        self._draft: _Reply | None = None  # a preemptive reply, held until the endpoint
        #: preemptive replies: ``started``, ``used`` (the turn ended as they assumed) and
        #: ``discarded`` (the caller went on, or the transcript changed)
        self.drafts = {"started": 0, "used": 0, "discarded": 0}
        # barge-in
        self._barge_frames = 0
        self._barge_onset: float | None = None
        self._pause_silence = 0
        self._paused_at: float | None = None
        self._heard_offset: float | None = None
        self._resume_from: float | None = None
        # echo reference: when each 20 ms block of reply audio plays, and its level (dB)
        self._ref_t: list[float] = []
        self._ref_v: list[float] = []
        self._ref_end = -math.inf  # when the modelled phone playout runs dry
        # the echo's return loss (dB below the reply), measured on frames taken for echo
        self._erl = self.config.echo_return_db
        self._erl_seen: deque[float] = deque(maxlen=50)
        self._pause_below: list[float] = []  # those of the frames that paused the reply
        self._hangup_pending = False
        self._marks: dict[str, tuple[int, str]] = {}
        self._mark_count = 0
        #: service failures counted by "service:reason"
        self.errors: dict[str, int] = {}
        self._says: deque[str] = deque()  # texts to say once the line is free

    # --- public inputs -------------------------------------------------------------

    def start(self, now: float, *, resumed: bool = False) -> list[Action]:
        """The call started: say the greeting, if there is one (``resume_greeting`` when
        the history was resumed from an earlier stream of the call)."""
        greeting = self.config.resume_greeting if resumed else self.config.greeting
        if not greeting:
            return []
        reply = self._new_reply(now, user_text="")
        out: list[Action] = []
        self._speak(reply, greeting, out, now)
        self._finish_text(reply, out, now)
        return out

    def say(self, text: str, now: float) -> list[Action]:
        """Say ``text`` as the agent (an operator's words, an announcement): at once when
        no reply is under way, else as soon as that reply has finished playing (or been
        cut by the caller and the caller's turn answered). It is an assistant turn like any
        other: synthesised, paced, cut at what the caller heard when talked over, and
        kept in the history as heard; its turn has no caller text.

        Raises
        ------
        ValueError
            When the text is empty, longer than :data:`MAX_SAY_CHARS`, when
            :data:`MAX_SAYS_WAITING` texts already wait, or when the call has ended.
        """
        text = text.strip()
        if not text:
            raise ValueError("there is no text to say")
        if len(text) > MAX_SAY_CHARS:
            raise ValueError(f"a text to say is {MAX_SAY_CHARS} characters at most")
        if self.ended:
            raise ValueError("the call has ended")
        if self._reply is not None or self._draft is not None or self._says:
            if len(self._says) >= MAX_SAYS_WAITING:
                raise ValueError(f"{MAX_SAYS_WAITING} texts already wait to be said")
            self._says.append(text)
            return []
        out: list[Action] = []
        self._say_now(text, out, now)
        return out

    @property
    def says_waiting(self) -> int:
        """Texts given to :meth:`say` that wait for the line."""
        return len(self._says)

    def _say_now(self, text: str, out: list[Action], now: float) -> None:
        reply = self._new_reply(now, user_text="")
        self._speak(reply, text, out, now)
        self._finish_text(reply, out, now)

    def _say_waiting(self, out: list[Action], now: float) -> None:
        """The line is free: say the next text waiting, if any."""
        if self._says and self._reply is None and self._draft is None and not self.ended:
            self._say_now(self._says.popleft(), out, now)

    def audio(self, pcm: PCM, now: float) -> list[Action]:
        """Caller audio at :attr:`rate` (any length), received at ``now``."""
        if self.ended or len(pcm) == 0:
            return []
        data = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        whole = len(data) // self._frame * self._frame
        self._pending = data[whole:].copy() if whole < len(data) else _NO_SAMPLES
        if whole == 0:
            return []
        frames = data[:whole] if whole < len(data) else data
        audible = self._reply_audible()
        heard = frames
        if self.agc is not None:
            # The reply coming back over the line is not the caller's level: the gain is
            # held while it plays.
            self.agc.hold = audible
            heard = self.agc.process(frames)
        speech, events = self.vad.process_frames(heard)
        end_sample = self._fed + whole
        self._fed = end_sample
        if self._prosodic:  # the last second or so, for the pitch at an end of speech
            recent = self._recent
            recent.append((end_sample - whole, heard))
            while recent[0][0] + len(recent[0][1]) < end_sample - self._recent_samples:
                recent.popleft()
        if not audible:
            if self._reply is None and not events:
                # listening, and the VAD saw no start or end: no frame changes anything
                # (see _frame_step), only the recogniser hears it
                return [SttAudio(heard)]
            gate = None
        else:
            n = whole // self._frame
            below = [math.inf] * n  # per frame: dB below the reply it came back (echo test)
            # The echo test compares the line's own levels with the reply's, before any gain.
            gate = self._echo_gate(frames, n, now, below)
        stt = heard
        if gate is not None and gate.any():
            stt = heard.copy()
            stt.reshape(len(speech), self._frame)[gate] = 0
        out: list[Action] = [SttAudio(stt)]
        at = {e.frame: e for e in events} if events else None
        first_frame = (end_sample - whole) // self._frame
        for i, is_speech in enumerate(speech):
            t = now - (whole - (i + 1) * self._frame) / self.rate
            event = at.get(first_frame + i) if at is not None else None
            if gate is None:
                self._frame_step(is_speech, False, event, t, out, math.inf)
            else:
                self._frame_step(is_speech, bool(gate[i]), event, t, out, below[i])
        return out

    def transcript(self, result: Transcript, now: float) -> list[Action]:
        """A transcript from the recogniser."""
        out: list[Action] = []
        if self.ended:
            return out
        text = result.text.strip()
        if self._paused_at is not None and text and self._has_real_word(text):
            self._confirm_barge_in(now, out)
        if result.final:
            if text:
                self._turn_texts.append(text)
                self._turn_started = True
            self._interim = ""
            self._final_at = now
        else:
            self._interim = text
            if text:
                self._turn_started = True
        if self.state != "listening":
            return out
        if result.final and text and not self._user_open and self._vad_end_at is None:
            # the recogniser heard a turn the VAD did not (a quiet caller)
            self._vad_end_at = now
            self._speech_end = self._speech_end or now
        if self._vad_end_at is not None:
            if self._final_wait is not None and result.final:
                self._end_turn(now, out)
            else:
                self._schedule_endpoint(now, out)
        return out

    def stt_failed(self, error: ServiceError, now: float) -> list[Action]:
        """The recogniser failed (the driver reopens it); counted."""
        self._count(error)
        return []

    def service_switched(
        self, reply: int | None, error: ServiceError, to: str, now: float
    ) -> list[Action]:
        """A fallback chain moved to service ``to`` after ``error``; the reply (``reply``,
        or ``None`` for the recogniser) goes on. Counted, and recorded in the turn."""
        self._count(error)
        r = self._live(reply) if reply is not None else None
        if r is not None:
            r.metrics.errors.append(f"{error.service}:{error.reason}")
            r.metrics.fallbacks.append(f"{error.service}:{error.reason}->{to}")
        return []

    def retrieved(self, reply: int, context: str, now: float) -> list[Action]:
        """The knowledge hook's answer for ``reply`` (empty: nothing found or it failed)."""
        r = self._live(reply)
        out: list[Action] = []
        if r is None or not r.retrieving:
            return out
        r.retrieving = False
        r.retrieve_deadline = None
        r.context = context[:4000]
        self._start_llm(r, out, now)
        return out

    def llm_event(self, reply: int, event: LlmEvent, now: float) -> list[Action]:
        """The next event of reply ``reply``'s completion."""
        r = self._live(reply)
        out: list[Action] = []
        if r is None or not r.llm_open:
            return out
        r.llm_deadline = now + self.config.llm_timeout
        if r.metrics.llm_first_token is None and not isinstance(event, Usage):
            r.metrics.llm_first_token = now
        if isinstance(event, TextDelta):
            for chunk in r.chunker.push(event.text):
                self._speak(r, chunk, out, now)
        elif isinstance(event, ToolCall):
            r.round_calls.append(event)
        return out

    def llm_done(self, reply: int, now: float) -> list[Action]:
        """Reply ``reply``'s completion ended normally."""
        r = self._live(reply)
        out: list[Action] = []
        if r is None or not r.llm_open:
            return out
        r.llm_open = False
        r.llm_deadline = None
        for chunk in r.chunker.flush():
            self._speak(r, chunk, out, now)
        calls = r.round_calls
        r.round_calls = []
        if calls and r.draft:
            r.held_calls = calls  # no tool runs before the caller's turn is confirmed
            return out
        self._round_end(r, calls, out, now)
        return out

    def _round_end(self, r: _Reply, calls: list[ToolCall], out: list[Action], now: float) -> None:
        """A model round ended with ``calls``: run them, or finish the reply's text."""
        if not calls:
            self._finish_text(r, out, now)
            return
        # the round's assistant message carries its calls (and what it said before them)
        if r.round_message is None:
            r.round_message = self.history.add_assistant("", calls)
            r.messages.append(r.round_message)
        else:
            old = self.history.messages[r.round_message]
            self.history.messages[r.round_message] = ChatMessage(
                "assistant", old.content, tuple(calls)
            )
        r.round += 1
        r.metrics.tool_rounds = r.round
        for call in calls:
            if call.name == END_CALL:
                r.end_call = True
                self.history.add_tool_result(call.id, call.name, "the call will end")
                continue
            r.pending_tools[call.id] = call
            out.append(RunTool(r.id, call))
        if r.pending_tools:
            if self.config.filler_after > 0 and not r.filler_said:
                r.filler_at = now + self.config.filler_after
        else:
            self._after_tools(r, out, now)

    def llm_failed(self, reply: int, error: ServiceError, now: float) -> list[Action]:
        """Reply ``reply``'s completion failed."""
        r = self._live(reply)
        out: list[Action] = []
        if r is None or not r.llm_open:
            return out
        r.llm_open = False
        r.llm_deadline = None
        if r.draft:
            self._count(error)
            self._discard_draft(out)  # the reply starts afresh at the end of the turn
            return out
        self._fail(r, error, out, now)
        return out

    def tool_result(self, reply: int, outcome: ToolOutcome, now: float) -> list[Action]:
        """A tool call of reply ``reply`` finished (its result always enters the history)."""
        out: list[Action] = []
        owner = None
        for r in (self._reply, self._carry):
            if r is not None and r.id == reply and outcome.call_id in r.pending_tools:
                owner = r
        if owner is None:
            return out
        del owner.pending_tools[outcome.call_id]
        self.history.add_tool_result(outcome.call_id, outcome.name, outcome.content)
        owner.metrics.tools.append(ToolRecord(outcome.name, outcome.seconds, outcome.error))
        if not owner.pending_tools:
            owner.filler_at = None
            if owner is self._carry:
                self._carry = None
            elif owner is self._reply and not owner.failed:
                self._after_tools(owner, out, now)
        return out

    def tts_audio(self, reply: int, chunk: SpeechAudio, now: float, rate: int) -> list[Action]:
        """Synthesised audio of reply ``reply`` at ``rate`` Hz."""
        r = self._live(reply)
        out: list[Action] = []
        if r is None or not r.tts_open:
            return out
        r.tts_deadline = None
        if r.metrics.tts_first_audio is None:
            r.metrics.tts_first_audio = now
        if r.rate == 0:
            r.rate = rate
        elif rate != r.rate:
            self._fail(r, ServiceError("tts", "rate_changed"), out, now)
            return out
        pcm = chunk.pcm
        start = r.audio_samples / rate
        r.audio.append(pcm)
        r.audio_samples += len(pcm)
        self._place_words(r, chunk.words, chunk.text, start, r.audio_samples / rate)
        if not r.paused and len(pcm):
            # no marks inside a reply: a mark pads the partial frame before it with
            # silence, which would move the reply's later words on the line
            self._play(r, pcm, start, out, now)
        return out

    def tts_done(self, reply: int, now: float) -> list[Action]:
        """Reply ``reply``'s synthesis stream ended (after :class:`EndTts`)."""
        r = self._live(reply)
        out: list[Action] = []
        if r is None or not r.tts_open:
            return out
        r.tts_open = False
        r.tts_deadline = None
        self._mark_end(r, out, now)
        return out

    def tts_failed(self, reply: int, error: ServiceError, now: float) -> list[Action]:
        """Reply ``reply``'s synthesis failed: what played stays; the reply ends."""
        r = self._live(reply)
        out: list[Action] = []
        if r is None:
            return out
        self._count(error)
        if r.draft:
            r.tts_open = False
            self._discard_draft(out)
            return out
        r.metrics.errors.append(f"{error.service}:{error.reason}")
        r.tts_open = False
        r.tts_deadline = None
        r.failed = True
        if r.llm_open:
            r.llm_open = False
            out.append(CancelLlm(r.id))
        # a synthesiser that failed cannot say the apology: the reply ends here
        self._mark_end(r, out, now)
        return out

    def heard(self, reply: int, offset: float, now: float) -> list[Action]:
        """After a :class:`Clear`: reply ``reply`` had played up to ``offset`` seconds."""
        out: list[Action] = []
        r = self._reply
        if r is None or r.id != reply:
            return out
        self._heard_offset = max(0.0, offset)
        self._resume_from = self._word_start_at(r, self._heard_offset)
        return out

    def mark_played(self, name: str, now: float, *, cleared: bool = False) -> list[Action]:
        """A mark came back from the phone (``cleared``: dropped by a clear)."""
        out: list[Action] = []
        entry = self._marks.pop(name, None)
        if entry is None:
            return out
        reply_id, kind = entry
        r = self._reply
        if r is None or r.id != reply_id or cleared:
            return out
        if kind == "start" and r.metrics.first_audio_played is None:
            r.metrics.first_audio_played = now
        elif kind == "end" and not r.paused:
            r.metrics.reply_end_played = now
            self._reply_finished(r, out, now)
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due, or None."""
        due = self._endpoint_at
        wait = self._final_wait
        if wait is not None and (due is None or wait < due):
            due = wait
        for r in (self._reply, self._carry, self._draft):
            if r is not None:
                for t in (r.llm_deadline, r.tts_deadline, r.filler_at, r.retrieve_deadline):
                    if t is not None and (due is None or t < due):
                        due = t
        return due

    def handle_timer(self, now: float) -> list[Action]:
        """Run whatever is due at ``now``."""
        out: list[Action] = []
        if self.ended:
            return out
        if self._endpoint_at is not None and now >= self._endpoint_at:
            self._endpoint_at = None
            self._end_turn(now, out)
        if self._final_wait is not None and now >= self._final_wait:
            self._final_wait = None
            self._start_reply(now, out)
        d = self._draft
        if d is not None:
            if d.retrieve_deadline is not None and now >= d.retrieve_deadline:
                d.retrieving = False
                d.retrieve_deadline = None
                d.metrics.errors.append("knowledge:timeout")
                self._start_llm(d, out, now)
            for deadline, service in ((d.llm_deadline, "llm"), (d.tts_deadline, "tts")):
                if deadline is not None and now >= deadline:
                    self._count(ServiceError(service, "timeout"))
                    self._discard_draft(out)
                    break
        r = self._reply
        if r is not None:
            if r.retrieve_deadline is not None and now >= r.retrieve_deadline:
                r.retrieving = False
                r.retrieve_deadline = None
                r.metrics.errors.append("knowledge:timeout")
                self._start_llm(r, out, now)
            if r.llm_deadline is not None and now >= r.llm_deadline:
                r.llm_deadline = None
                if r.llm_open:
                    r.llm_open = False
                    out.append(CancelLlm(r.id))
                    self._fail(r, ServiceError("llm", "timeout"), out, now)
            if r.tts_deadline is not None and now >= r.tts_deadline:
                r.tts_deadline = None
                out.append(CancelTts(r.id))
                out += self.tts_failed(r.id, ServiceError("tts", "timeout"), now)
            if r.filler_at is not None and now >= r.filler_at:
                r.filler_at = None
                if r.pending_tools and not r.filler_said:
                    r.filler_said = True
                    self._speak(r, self.config.filler_text, out, now)
        return out

    @property
    def caller_speaking(self) -> bool:
        """The VAD is in the caller's speech (a turn, or talk over the reply)."""
        return self._user_open

    @property
    def live_reply(self) -> int | None:
        """The reply under way (being written, spoken or paused), if any."""
        return self._reply.id if self._reply is not None else None

    def close(self, heard: float | None = None) -> list[Action]:
        """The call ended: cancel whatever is in flight.

        ``heard`` is how far the live reply had played (seconds of its audio, as for
        :meth:`heard`): its assistant turn is cut to those words, as after a barge-in,
        since the caller heard no more of it. None: nothing of it was heard.
        """
        out: list[Action] = []
        self._discard_draft(out)
        r = self._reply
        if r is not None:
            self._cancel(r, out)
            texts = self._heard_texts(r, heard if heard is not None else 0.0)
            self.history.cut_reply(r.messages, texts)
            r.metrics.heard_text = " ".join(t for t in texts if t)
            r.metrics.heard_seconds = heard
            r.playing = False
            self.closed.append(r.metrics)
            self._reply = None
        self.ended = True
        return out

    # --- listening -----------------------------------------------------------------

    def _frame_step(
        self,
        speech: bool,
        echo: bool,
        event: SpeechStart | SpeechEnd | None,
        t: float,
        out: list[Action],
        below: float,
    ) -> None:
        reply = self._reply
        if reply is not None:
            # a reply is being prepared or played: caller sound may stop it (barge-in)
            self._barge_step(reply, speech and not echo, t, out, below)
            if isinstance(event, SpeechStart) and not echo:
                self._user_open = True
            elif isinstance(event, SpeechEnd):
                self._user_open = False
            return
        if isinstance(event, SpeechStart):
            self._user_open = True
            self._endpoint_at = None
            self._final_wait = None
            self._vad_end_at = None
            self._end_prosody = None
            self._discard_draft(out)  # the caller went on
        elif isinstance(event, SpeechEnd) and self._user_open:
            self._user_open = False
            if self._prosodic:
                self._end_prosody = self._prosody_before(event.sample)
            self._turn_started = True
            self._speech_end = t - self.policy.hangover_ms / 1000
            self._vad_end_at = t
            self._schedule_endpoint(t, out)

    def _schedule_endpoint(self, now: float, out: list[Action]) -> None:
        if self._vad_end_at is None or self.state != "listening":
            return
        text = self._turn_text()
        if self._prosodic:
            delay = self.policy.delay(text, self._end_prosody)  # type: ignore[call-arg]
        else:
            delay = self.policy.delay(text)
        self._endpoint_at = max(now, self._vad_end_at + delay)
        d = self._draft
        if d is not None and (self._interim or d.metrics.user_text != text):
            self._discard_draft(out)  # the transcript moved on: the draft answers old words
        if (
            self.config.preemptive
            and self._draft is None
            and self._reply is None
            and self._turn_texts
            and not self._interim
            and self.config.preemptive_min_wait
            <= self._endpoint_at - now
            <= self.config.preemptive_max_wait
        ):
            self._start_draft(text, now, out)

    def _prosody_before(self, sample: int) -> Prosody | None:
        """How the speech ending at ``sample`` ended, from the audio kept; None when too
        little of it is kept or the audio cannot tell."""
        start = sample - int(0.4 * self.rate)
        parts = [
            chunk[max(0, start - at) : max(0, sample - at)]
            for at, chunk in self._recent
            if at < sample and at + len(chunk) > start
        ]
        if not parts:
            return None
        try:
            return prosody(np.concatenate(parts), self.rate)
        except ValueError:
            return None

    def _turn_text(self) -> str:
        parts = [*self._turn_texts, self._interim] if self._interim else self._turn_texts
        return " ".join(p for p in parts if p)[: self.config.max_user_chars]

    def _end_turn(self, now: float, out: list[Action]) -> None:
        self._endpoint_at = None
        if not self._turn_started and not self._turn_texts and not self._interim:
            self._vad_end_at = None
            self._discard_draft(out)
            return
        if self._interim or not self._turn_texts:
            # the final is not in yet: ask for it and wait a little
            if self._final_wait is None:
                out.append(FinalizeStt())
                self._final_wait = now + self.config.final_timeout
            elif now >= self._final_wait:
                self._start_reply(now, out)
            return
        self._final_wait = None
        self._start_reply(now, out)

    def _start_reply(self, now: float, out: list[Action]) -> None:
        self._final_wait = None
        text = self._turn_text()
        speech_end = self._speech_end
        endpoint = self._vad_end_at
        final_at = self._final_at
        self._turn_texts = []
        self._interim = ""
        self._turn_started = False
        self._vad_end_at = None
        self._speech_end = None
        self._final_at = None
        d = self._draft
        if d is not None and text and d.metrics.user_text == text:
            self._promote(d, now, out, speech_end, endpoint, final_at)
            return
        self._discard_draft(out)
        if not text:
            self._say_waiting(out, now)  # the caller's sound was no turn: the line is free
            return
        r = self._new_reply(now, user_text=text)
        m = r.metrics
        m.speech_end = speech_end
        m.endpoint = now
        m.stt_final = final_at
        if endpoint is not None and speech_end is not None:
            m.endpoint_delay = now - endpoint
        r.user_message = self.history.add_user(text)
        if self.config.knowledge:
            r.retrieving = True
            r.retrieve_deadline = now + self.config.retrieve_timeout
            out.append(Retrieve(r.id, text))
        else:
            self._start_llm(r, out, now)

    def _new_reply(self, now: float, user_text: str) -> _Reply:
        self._next_reply += 1
        metrics = TurnMetrics(len(self.turns), user_text=user_text)
        self.turns.append(metrics)
        r = _Reply(self._next_reply, metrics, SentenceChunker())
        self._reply = r
        self.state = "thinking"
        return r

    # --- preemptive replies ----------------------------------------------------------

    def _start_draft(self, text: str, now: float, out: list[Action]) -> None:
        """Prepare the reply to ``text`` now; it is held until the end of the turn."""
        self._next_reply += 1
        metrics = TurnMetrics(len(self.turns), user_text=text, preemptive=True)
        d = _Reply(self._next_reply, metrics, SentenceChunker(), draft=True, paused=True)
        self._draft = d
        self.drafts["started"] += 1
        d.user_message = self.history.add_user(text)
        if self.config.knowledge:
            d.retrieving = True
            d.retrieve_deadline = now + self.config.retrieve_timeout
            out.append(Retrieve(d.id, text))
        else:
            self._start_llm(d, out, now)

    def _promote(
        self,
        d: _Reply,
        now: float,
        out: list[Action],
        speech_end: float | None,
        endpoint: float | None,
        final_at: float | None,
    ) -> None:
        """The turn ended as the draft assumed: it becomes the reply, and plays."""
        self._draft = None
        self.drafts["used"] += 1
        d.draft = False
        d.paused = False
        m = d.metrics
        m.index = len(self.turns)
        self.turns.append(m)
        m.speech_end = speech_end
        m.endpoint = now
        m.stt_final = final_at
        if endpoint is not None and speech_end is not None:
            m.endpoint_delay = now - endpoint
        self._reply = d
        self.state = "thinking"
        if d.held_calls is not None:
            calls, d.held_calls = d.held_calls, None
            self._round_end(d, calls, out, now)
        if d.audio_samples:
            data = np.concatenate(d.audio) if len(d.audio) > 1 else d.audio[0]
            self._play(d, data.copy(), 0.0, out, now)
        if d.held_done:
            d.held_done = False
            self._reply_finished(d, out, now)
        elif d.end_marked and not d.tts_open:
            d.end_marked = False
            self._mark_end(d, out, now)

    def _discard_draft(self, out: list[Action]) -> None:
        """Drop the draft: its work is cancelled and its messages leave the history."""
        d = self._draft
        if d is None:
            return
        self._draft = None
        self.drafts["discarded"] += 1
        self._cancel(d, out)
        self.history.cut_reply(d.messages, [""] * len(d.messages))
        if d.user_message is not None:
            del self.history.messages[d.user_message]

    def _caller_continued(self, r: _Reply, t: float, out: list[Action]) -> None:
        """Speech after the endpoint, before any audio played: the turn was not over."""
        self._cancel(r, out)
        self.history.cut_reply(r.messages, [""] * len(r.messages))  # none of it was heard
        last = len(self.history.messages) - 1
        if r.user_message is not None and r.user_message == last and r.round == 0:
            # no tool ran: take the caller's words back into the turn that goes on
            text = self.history.messages[r.user_message].content
            del self.history.messages[r.user_message]
            self.turns.remove(r.metrics)
            self._turn_texts = [text, *self._turn_texts]
        else:
            self.closed.append(r.metrics)
        self._turn_started = True
        self._user_open = True
        self._endpoint_at = None
        self._final_wait = None
        self._vad_end_at = None
        self._reply = None
        self.state = "listening"

    # --- the reply -------------------------------------------------------------------

    def _start_llm(self, r: _Reply, out: list[Action], now: float) -> None:
        messages = self.history.messages_for_model()
        if r.context:
            messages.insert(
                1 if messages and messages[0].role == "system" else 0,
                ChatMessage("system", "Knowledge for the caller's question:\n" + r.context),
            )
        r.llm_open = True
        r.round_message = None
        r.llm_deadline = now + self.config.llm_timeout
        if r.metrics.llm_request is None:
            r.metrics.llm_request = now
        out.append(StartLlm(r.id, tuple(messages), self.tools))

    def _after_tools(self, r: _Reply, out: list[Action], now: float) -> None:
        if r.end_call:
            self._finish_text(r, out, now)
        elif r.round >= self.config.max_tool_rounds:
            self._speak(r, "Sorry, I could not finish that request.", out, now)
            self._finish_text(r, out, now)
        else:
            self._start_llm(r, out, now)

    def _speak(self, r: _Reply, text: str, out: list[Action], now: float) -> None:
        text = text.strip()
        if not text:
            return
        if not r.tts_open:
            if r.tts_ended:
                return
            r.tts_open = True
            out.append(StartTts(r.id))
        if r.round_message is None:
            r.round_message = self.history.add_assistant("")
            r.messages.append(r.round_message)
        message = r.round_message
        content = self.history.messages[message].content
        self.history.set_content(message, f"{content} {text}" if content else text)
        if r.flat:
            r.flat += " "
        r.spoken.append(_Spoken(message, text, len(r.flat)))
        r.flat += text
        r.metrics.reply_text = r.flat
        if r.metrics.first_sentence is None:
            r.metrics.first_sentence = now
        if r.tts_deadline is None:
            r.tts_deadline = now + self.config.tts_timeout
        out.append(SpeakText(r.id, text))

    def _finish_text(self, r: _Reply, out: list[Action], now: float) -> None:
        """The reply's text is complete."""
        if r.tts_open and not r.tts_ended:
            r.tts_ended = True
            out.append(EndTts(r.id))
        elif not r.tts_open and not r.spoken:
            self._reply_finished(r, out, now)  # nothing to say

    def _fail(self, r: _Reply, error: ServiceError, out: list[Action], now: float) -> None:
        self._count(error)
        r.metrics.errors.append(f"{error.service}:{error.reason}")
        if not r.apologised and self.config.apology_text:
            r.apologised = True
            r.round_message = None
            self._speak(r, self.config.apology_text, out, now)
        self._finish_text(r, out, now)

    def _mark_end(self, r: _Reply, out: list[Action], now: float) -> None:
        if r.end_marked:
            return
        r.end_marked = True
        if not r.started_audio:
            if r.paused:
                return  # held: it plays (and ends) when the hold is released
            self._reply_finished(r, out, now)
            return
        self._mark_count += 1
        name = f"reply-{r.id}-end-{self._mark_count}"
        self._marks[name] = (r.id, "end")
        out.append(Mark(name, r.id, final=True))

    def _play(self, r: _Reply, pcm: PCM, offset: float, out: list[Action], now: float) -> None:
        if not r.started_audio:
            r.started_audio = True
            name = f"reply-{r.id}-start"
            self._marks[name] = (r.id, "start")
            out.append(Mark(name, r.id))
            r.metrics.first_audio_sent = now
        r.playing = True
        self.state = "speaking"
        self._reference(pcm, r.rate, now)
        out.append(Play(r.id, pcm, r.rate, offset))
        r.played_samples = round(offset * r.rate) + len(pcm)

    def _reply_finished(self, r: _Reply, out: list[Action], now: float) -> None:
        if r.draft:
            r.held_done = True  # it finishes once it is confirmed
            return
        r.playing = False
        self.closed.append(r.metrics)
        messages = self.history.messages
        r.metrics.heard_text = " ".join(
            messages[i].content for i in r.messages if i < len(messages) and messages[i].content
        )
        if self._reply is r:
            self._reply = None
            self.state = "listening"
        if r.end_call:
            self.ended = True
            out.append(HangUp("the agent ended the call"))
        self._say_waiting(out, now)

    def _cancel(self, r: _Reply, out: list[Action]) -> None:
        if r.llm_open:
            r.llm_open = False
            out.append(CancelLlm(r.id))
        if r.tts_open:
            r.tts_open = False
            out.append(CancelTts(r.id))
        r.llm_deadline = r.tts_deadline = r.filler_at = r.retrieve_deadline = None
        if r.pending_tools:
            self._carry = r  # their results still enter the history

    def _live(self, reply: int) -> _Reply | None:
        for r in (self._reply, self._draft):
            if r is not None and r.id == reply:
                return r
        return None

    def _count(self, error: ServiceError) -> None:
        key = f"{error.service}:{error.reason}"
        self.errors[key] = self.errors.get(key, 0) + 1

    # --- barge-in --------------------------------------------------------------------

    def _reply_audible(self) -> bool:
        r = self._reply
        return r is not None and r.playing

    def _barge_step(
        self, r: _Reply, speech: bool, t: float, out: list[Action], below: float
    ) -> None:
        if self._paused_at is None:
            if speech:
                self._pause_below.append(below)
                self._barge_frames += 1
                if self._barge_onset is None:
                    self._barge_onset = t - self._frame / self.rate
                if self._barge_frames >= self.config.pause_frames:
                    self._pause(r, t, out)
            else:
                self._barge_frames = 0
                self._barge_onset = None
                self._pause_below.clear()
            return
        # paused: confirm on enough speech, resume after silence
        if speech:
            self._barge_frames += 1
            self._pause_silence = 0
            if self._barge_frames * self._frame / self.rate >= self.config.confirm_s:
                self._confirm_barge_in(t, out)
        else:
            self._pause_silence += 1
            if self._pause_silence == _GAP_FRAMES:
                # a gap: the sound that comes next must make the case on its own (noise
                # bursts in a row do not add up to speech)
                self._barge_frames = 0
            if self._pause_silence * self._frame / self.rate >= self.config.resume_after_s:
                self._resume(r, t, out)

    def _pause(self, r: _Reply, t: float, out: list[Action]) -> None:
        self._paused_at = t
        self._pause_silence = 0
        self._heard_offset = None
        self._resume_from = None
        r.paused = True
        if not r.started_audio:
            return  # nothing plays yet: hold the reply's audio until the sound is judged
        # what had played still comes back as echo for a while; what was queued never plays
        keep = bisect.bisect_right(self._ref_t, t)
        del self._ref_t[keep:], self._ref_v[keep:]
        self._ref_end = t
        r.metrics.interrupted_at = t
        out.append(Clear(r.id))

    def _resume(self, r: _Reply, t: float, out: list[Action]) -> None:
        # the sound that paused the reply was not the caller: where it came with the reply
        # sounding, it tells the echo's return loss (a speakerphone turned on mid-call)
        self._erl_seen.extend(b for b in self._pause_below if math.isfinite(b))
        self._pause_below.clear()
        if self._erl_seen:
            ranked = sorted(self._erl_seen)
            self._erl = max(self.config.echo_margin_db, ranked[len(ranked) // 10])
        r.metrics.false_interruptions += 1
        r.metrics.interrupted_at = None
        self._paused_at = None
        self._barge_frames = 0
        self._barge_onset = None
        r.paused = False
        start = self._resume_from
        if start is None:
            start = r.played_samples / r.rate if r.rate else 0.0
        self._resume_from = None
        first = round(start * r.rate)
        if first < r.audio_samples:
            data = np.concatenate(r.audio) if len(r.audio) > 1 else r.audio[0]
            self._play(r, data[first:].copy(), first / r.rate, out, t)
        elif r.tts_ended and not r.tts_open and r.end_marked:
            # everything had played; the end mark was cleared: finish now
            self._reply_finished(r, out, t)
            return
        if r.end_marked and not r.tts_open:
            r.end_marked = False
            self._mark_end(r, out, t)

    def _confirm_barge_in(self, t: float, out: list[Action]) -> None:
        r = self._reply
        if r is None:
            return
        if not r.started_audio:
            self._paused_at = None
            self._barge_frames = 0
            self._barge_onset = None
            self._caller_continued(r, t, out)
            return
        self._paused_at = None
        self._barge_frames = 0
        r.metrics.interrupted = True
        self._cancel(r, out)
        heard = self._heard_offset if self._heard_offset is not None else 0.0
        texts = self._heard_texts(r, heard)
        self.history.cut_reply(r.messages, texts)
        r.metrics.heard_text = " ".join(t_ for t_ in texts if t_)
        r.metrics.heard_seconds = heard
        r.playing = False
        self.closed.append(r.metrics)
        self._reply = None
        self.state = "listening"
        # the caller's speech is a new turn, already under way
        self._user_open = True
        self._turn_started = True
        self._barge_onset = None

    def _has_real_word(self, text: str) -> bool:
        return any(w.lower() not in _FILLERS for w in _WORD.findall(text))

    # --- echo gate -------------------------------------------------------------------

    def _reference(self, pcm: PCM, rate: int, now: float) -> None:
        """Model when this reply audio plays at the phone, 20 ms block by block."""
        block = max(1, rate // 50)
        n = len(pcm) // block
        start = max(now, self._ref_end)
        if n:
            x = pcm[: n * block].astype(np.float32).reshape(n, block)
            levels = _dbfs(np.einsum("ij,ij->i", x, x) / block)
            self._ref_t += [start + i * 0.02 for i in range(n)]
            self._ref_v += levels.tolist()
        self._ref_end = start + len(pcm) / rate
        drop = bisect.bisect_left(self._ref_t, now - self.config.max_echo_delay - 0.1)
        if drop:
            del self._ref_t[:drop], self._ref_v[:drop]

    def _echo_gate(
        self, frames: PCM, n: int, now: float, below: list[float]
    ) -> npt.NDArray[np.bool_]:
        """Per frame: True where the caller's frame is the reply's own echo.

        A frame is echo when it is no louder than the loudest reply audio of the last
        ``max_echo_delay`` seconds less the echo return loss less ``echo_margin_db``. The
        return loss is measured: a low percentile of how far below the reply the frames
        taken for echo were (starting from ``echo_return_db``); a line with no echo thus
        lets the quietest caller onset through at once, a speakerphone is gated.
        """
        gate = np.zeros(n, dtype=bool)
        if not self._ref_t:
            return gate
        x = frames.astype(np.float32).reshape(n, self._frame)
        levels = _dbfs(np.einsum("ij,ij->i", x, x) / self._frame).tolist()
        frame_s = self._frame / self.rate
        reach = frame_s + self.config.max_echo_delay
        threshold = max(0.0, self._erl - self.config.echo_margin_db)
        for i, level in enumerate(levels):
            t_end = now - (n - 1 - i) * frame_s
            lo = bisect.bisect_left(self._ref_t, t_end - reach)
            hi = bisect.bisect_right(self._ref_t, t_end)
            if lo < hi:
                ref = max(self._ref_v[lo:hi])
                if ref > _SOUNDING_DBFS:
                    below[i] = ref - level
                if ref - level >= threshold:
                    gate[i] = True
                    if ref > _SOUNDING_DBFS:
                        self._erl_seen.append(ref - level)
        if len(self._erl_seen) >= 10:
            ranked = sorted(self._erl_seen)
            self._erl = max(self.config.echo_margin_db, ranked[len(ranked) // 10])
        return gate

    # --- what was heard --------------------------------------------------------------

    def _place_words(
        self, r: _Reply, words: Sequence[Word], text: str, start: float, end: float
    ) -> None:
        """Record where each spoken word's audio starts (engine timings or an estimate)."""
        pending = [s for s in r.spoken if s.audio_end is None]
        if pending and pending[0].audio_start is None:
            pending[0].audio_start = start
        cursor = r.words[-1][2] if r.words else 0
        for word in words:
            cursor = self._align(r, word.text, cursor)
            r.words.append((word.start, word.end, cursor))
        if text and pending:
            # this chunk finishes the oldest text still being synthesised
            done = pending[0]
            done.audio_end = end
            if not words:
                self._estimate_words(r, done)
            nxt = [s for s in r.spoken if s.audio_end is None]
            if nxt:
                nxt[0].audio_start = end

    def _align(self, r: _Reply, word: str, cursor: int) -> int:
        """Char end of ``word`` in the spoken text, searching forward from ``cursor``."""
        key = "".join(_WORD.findall(word.lower()))
        for m in _WORD.finditer(r.flat, cursor):
            if not key or "".join(_WORD.findall(m.group().lower())) == key:
                return m.end()
            if m.start() - cursor > 60:
                break
        nxt = _WORD.search(r.flat, cursor)  # no match: take the next word
        return nxt.end() if nxt else len(r.flat)

    def _estimate_words(self, r: _Reply, s: _Spoken) -> None:
        """No timings from the engine: spread the words over the text's audio by length."""
        if s.audio_start is None or s.audio_end is None:
            return
        spans = list(_WORD.finditer(s.text))
        total = sum(len(m.group()) + 1 for m in spans) or 1
        seconds = s.audio_end - s.audio_start
        acc = 0
        for m in spans:
            begin = s.audio_start + seconds * acc / total
            acc += len(m.group()) + 1
            end = s.audio_start + seconds * acc / total
            r.words.append((begin, end, s.start + m.end()))

    def _word_start_at(self, r: _Reply, offset: float) -> float:
        """Start of the word playing at ``offset`` (or ``offset`` if it falls between)."""
        for start, end, _ in reversed(r.words):
            if start <= offset:
                return start if offset < end else offset
        return 0.0

    def _heard_texts(self, r: _Reply, offset: float) -> list[str]:
        """What the caller heard of each assistant message of ``r``: the words whose
        audio had started playing by ``offset`` seconds into the reply."""
        heard_end = 0
        for start, _, char_end in r.words:
            if start < offset:
                heard_end = max(heard_end, char_end)
        # keep punctuation glued to the last heard word ("Monday," / "it.")
        while heard_end < len(r.flat) and not r.flat[heard_end].isspace():
            if _WORD.match(r.flat, heard_end):
                break
            heard_end += 1
        texts: dict[int, list[str]] = {i: [] for i in r.messages}
        for s in r.spoken:
            end = min(len(s.text), heard_end - s.start)
            if end > 0:
                texts.setdefault(s.message, []).append(s.text[:end].rstrip())
        return [" ".join(texts.get(i, [])) for i in r.messages]
