"""Per-turn timings and counters of a conversation.

Every stage of a turn is stamped with the ``now`` the conversation was given when it
happened (the event loop's clock in a live call, a virtual clock in tests), so the
figures are server-side and exact. The stage names are the same everywhere: the agent's
log line, ``voxwire demo``'s table and the benchmarks.

==========================  ============================================================
stage                       when
==========================  ============================================================
``speech_end``              the end of the caller's last speech frame (VAD)
``endpoint``                the conversation decided the caller's turn was over
``stt_final``               the final transcript of the turn arrived
``llm_request``             the model was asked
``llm_first_token``         the model's first text (or tool call) arrived
``first_sentence``          the first chunk of text went to the TTS
``tts_first_audio``         the TTS gave the first audio
``first_audio_sent``        the first reply audio was queued for the phone
``first_audio_played``      the phone started playing it (its mark came back; for
                            protocols without marks, the pacer's play-out clock)
==========================  ============================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["STAGES", "ToolRecord", "TurnMetrics"]

STAGES = (
    "speech_end",
    "endpoint",
    "stt_final",
    "llm_request",
    "llm_first_token",
    "first_sentence",
    "tts_first_audio",
    "first_audio_sent",
    "first_audio_played",
)
"""The stage names, in the order a turn normally passes them."""


@dataclass
class ToolRecord:
    """One tool call of a turn."""

    name: str
    seconds: float
    error: bool


@dataclass
class TurnMetrics:
    """What one turn of the caller and the agent's reply took; see the module docstring."""

    index: int
    user_text: str = ""
    reply_text: str = ""
    """What the agent sent to the synthesiser (all of it, heard or not)."""
    heard_text: str = ""
    """What the caller heard of it (the history's assistant text)."""
    speech_end: float | None = None
    endpoint: float | None = None
    stt_final: float | None = None
    llm_request: float | None = None
    llm_first_token: float | None = None
    first_sentence: float | None = None
    tts_first_audio: float | None = None
    first_audio_sent: float | None = None
    first_audio_played: float | None = None
    reply_end_played: float | None = None
    interrupted: bool = False
    """The caller talked over the reply and the reply was stopped."""
    interrupted_at: float | None = None
    """When the barge-in was detected (the audio was stopped then)."""
    heard_seconds: float | None = None
    """How far the interrupted reply had played, in seconds of its audio."""
    false_interruptions: int = 0
    """Pauses for caller sound that turned out not to be speech (the reply resumed)."""
    tools: list[ToolRecord] = field(default_factory=list)
    tool_rounds: int = 0
    errors: list[str] = field(default_factory=list)
    """Service failures of the turn, as ``"service:reason"``."""
    fallbacks: list[str] = field(default_factory=list)
    """Fallback switches of the turn, as ``"service:reason->ServiceClass"`` (the reply
    went on with that service)."""
    endpoint_delay: float | None = None
    """The wait the turn-taking policy chose after the VAD's end of speech (seconds)."""
    preemptive: bool = False
    """The reply was prepared while the turn policy still waited (model and synthesiser
    started before ``endpoint``) and played once the turn ended as it assumed."""

    @property
    def reply_latency(self) -> float | None:
        """End of the caller's speech to the reply playing at the phone, in seconds."""
        if self.speech_end is None or self.first_audio_played is None:
            return None
        return self.first_audio_played - self.speech_end

    def stage_delays(self) -> dict[str, float | None]:
        """Each stage's time after ``speech_end``, in seconds (None where not reached)."""
        base = self.speech_end
        out: dict[str, float | None] = {}
        for name in STAGES:
            value = getattr(self, name)
            out[name] = None if base is None or value is None else value - base
        return out

    def ttfb(self) -> dict[str, float | None]:
        """Each service's time to its first result, in seconds (None where not reached):
        ``stt`` from the end of speech to the final transcript, ``llm`` from the request to
        the first token, ``tts`` from the first sentence sent to the first audio."""

        def between(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else b - a

        return {
            "stt": between(self.speech_end, self.stt_final),
            "llm": between(self.llm_request, self.llm_first_token),
            "tts": between(self.first_sentence, self.tts_first_audio),
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types, with the delays after ``speech_end`` under ``"delays"`` and
        the services' times to first result under ``"ttfb"``."""
        out = asdict(self)
        out["reply_latency"] = self.reply_latency
        out["delays"] = self.stage_delays()
        out["ttfb"] = self.ttfb()
        return out

    def log_line(self, text: Callable[[str], str] | None = None) -> str:
        """One line for the call's log; with ``text`` (a redaction such as
        :func:`voxwire.security.redact_digits`), the caller's transcript and what the
        caller heard of the reply, passed through it, are added."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f}"

        d = self.stage_delays()
        parts = " ".join(f"{name}={ms(d[name])}" for name in STAGES[1:])
        extra = " interrupted" if self.interrupted else ""
        if self.tools:
            extra += " tools=" + ",".join(
                f"{t.name}:{t.seconds * 1000:.0f}ms{'!' if t.error else ''}" for t in self.tools
            )
        if self.errors:
            extra += " errors=" + ",".join(self.errors)
        if self.fallbacks:
            extra += " fallbacks=" + ",".join(self.fallbacks)
        if text is not None:
            extra += f" caller={json.dumps(text(self.user_text))}"
            extra += f" heard={json.dumps(text(self.heard_text))}"
        return f"turn {self.index}: ms after speech end: {parts}{extra}"
