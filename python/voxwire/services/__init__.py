"""Speech and language services: the contracts, and the engines and clients behind them.

:mod:`voxwire.services.base` defines what a speech-to-text, language-model or
text-to-speech service must offer (typed protocols, so any vendor client or local engine
fits by shape). The conversation in :mod:`voxwire.voice` and the agent in
:mod:`voxwire.agents` use nothing else of a service.
"""

from __future__ import annotations

from voxwire.services.base import (
    PCM,
    ChatMessage,
    LanguageModel,
    LlmEvent,
    LlmStream,
    Outbox,
    Preparable,
    Role,
    SpeechAudio,
    SpeechToText,
    StreamMixin,
    SttStream,
    TextDelta,
    TextToSpeech,
    ToolCall,
    ToolSpec,
    Transcript,
    TtsStream,
    Usage,
    Word,
)

__all__ = [
    "PCM",
    "ChatMessage",
    "LanguageModel",
    "LlmEvent",
    "LlmStream",
    "Outbox",
    "Preparable",
    "Role",
    "SpeechAudio",
    "SpeechToText",
    "StreamMixin",
    "SttStream",
    "TextDelta",
    "TextToSpeech",
    "ToolCall",
    "ToolSpec",
    "Transcript",
    "TtsStream",
    "Usage",
    "Word",
]
