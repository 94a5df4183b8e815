"""What a message from the application asks the simulated provider for.

A provider side (:mod:`voxwire.sim.providers.base`) reads each message the application
sends into these events: audio to play, a mark to echo once the audio before it has
played, a clear; or, when the provider would not accept it, :class:`Unexpected`.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxwire._types import PCM

__all__ = ["PCM", "ClearAudio", "Message", "PhoneEvent", "PlayAudio", "PlayMark", "Unexpected"]

Message = str | bytes


@dataclass(frozen=True, slots=True, eq=False)
class PlayAudio:
    """The application sent audio to play to the caller (line-rate PCM)."""

    pcm: PCM


@dataclass(frozen=True, slots=True)
class PlayMark:
    """The application asked to be told when the audio sent so far has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearAudio:
    """The application asked to drop the audio queued for the caller (barge-in)."""


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A message the provider would not accept (kept for the report; raised when strict)."""

    reason: str


PhoneEvent = PlayAudio | PlayMark | ClearAudio | Unexpected
