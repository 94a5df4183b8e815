"""A voice agent that remembers, for ``voxwire serve --agent tests.store.resume_agent:build``.

Its fake recogniser reads the script in ``$RESUME_AGENT_SAYS`` (utterances separated by
``|``: what the caller says on the stream this server gets); its model answers from the
whole history: "What is my name?" is answered with the name given in an earlier turn,
whichever stream of the call it was given on, or "I do not know your name." without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from voxwire.agents.pipeline import VoiceAgent
from voxwire.services.base import ChatMessage
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts

NAME_GIVEN = "my name is "
ASKED = "what is my name"


def remember(messages: Sequence[ChatMessage]) -> str:
    """The reply to the last user message, from everything the caller said before."""
    said = [m.content.lower() for m in messages if m.role == "user"]
    last = said[-1] if said else ""
    if NAME_GIVEN in last:
        return f"Nice to meet you, {last.split(NAME_GIVEN, 1)[1].strip(' .').title()}."
    if ASKED in last:
        for earlier in said[:-1]:
            if NAME_GIVEN in earlier:
                name = earlier.split(NAME_GIVEN, 1)[1].strip(" .").title()
                return f"Your name is {name}."
        return "I do not know your name."
    things = "thing" if len(said) == 1 else "things"
    return f"Noted, that makes {len(said)} {things} you told me."


def build() -> VoiceAgent:
    says = os.environ.get("RESUME_AGENT_SAYS", "hello").split("|")
    return VoiceAgent(
        FakeStt(says),
        FakeLlm(remember, first_token=0.05, per_token=0.01),
        FakeTts(),
        system_prompt="Remember what the caller tells you.",
    )
