"""Agents that run on a call (any :class:`voxwire.aio.CallSurface`: the WebSocket
dialects, AudioSocket, RTP).

* :mod:`voxwire.agents.pipeline`: :class:`~voxwire.agents.pipeline.VoiceAgent`, the voice
  agent (streaming STT -> LLM -> TTS, barge-in, tools, knowledge) on any services;
* :mod:`voxwire.agents.echo`: the echo test: it listens with voxwire's VAD and plays each
  utterance back, stopping at once when the caller talks over it; the end-to-end check of
  the media path, and what ``voxwire serve --echo`` runs;
* :mod:`voxwire.agents.server`: serving an agent on one protocol (``voxwire serve``);
* :mod:`voxwire.agents.demo`: the offline Harbor Dental agent and ``voxwire demo``, with
  :mod:`voxwire.agents.booking`, its appointment book.

The voice agent is imported from its module (it pulls in the conversation layer).
"""

from __future__ import annotations

from voxwire.agents.echo import Clear, EchoAgent, EchoStats, Mark, Play, echo_handler

__all__ = ["Clear", "EchoAgent", "EchoStats", "Mark", "Play", "echo_handler"]
