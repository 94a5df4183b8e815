"""Voice agents that run on a :class:`voxwire.aio.Call`.

:mod:`voxwire.agents.echo` holds the echo test: it listens with voxwire's VAD and plays
each utterance back, stopping at once when the caller talks over it. It is the end-to-end
check of the media path (transport, G.711, resampling, VAD, pacing, marks, barge-in), and
what ``voxwire serve --echo`` runs.
"""

from __future__ import annotations

from voxwire.agents.echo import Clear, EchoAgent, EchoStats, Mark, Play, echo_handler

__all__ = ["Clear", "EchoAgent", "EchoStats", "Mark", "Play", "echo_handler"]
