"""The conversation layer: turns, replies, barge-in, history and per-turn metrics.

Everything here is sans-I/O: time and events in, actions out, no asyncio and no vendor
code. :class:`Conversation` is the core; :mod:`voxwire.agents.pipeline` drives it on a
call with real services.

- :mod:`voxwire.voice.conversation`: listening, thinking, speaking; barge-in; actions
- :mod:`voxwire.voice.turns`: when the caller's turn is over
- :mod:`voxwire.voice.text`: the model's text cut into speakable sentences
- :mod:`voxwire.voice.history`: the chat context, cut to what the caller heard
- :mod:`voxwire.voice.tools`: typed tools the model may call
- :mod:`voxwire.voice.metrics`: per-turn stage timings
"""

from __future__ import annotations

from voxwire.voice.conversation import Conversation, ToolOutcome, VoiceConfig
from voxwire.voice.history import History
from voxwire.voice.metrics import STAGES, TurnMetrics

__all__ = ["STAGES", "Conversation", "History", "ToolOutcome", "TurnMetrics", "VoiceConfig"]
