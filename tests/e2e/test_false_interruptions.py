"""The agent's own voice coming back over the line, and short noise bursts, never stop a
reply for good: the reply plays to its end and the history holds all of it.

Each call: the simulated phone asks a question and listens to a long answer while its
line returns what it plays 15 dB down (``Network.echo_db``) and adds bursts of white
noise of 40-140 ms (``Network.noise_bursts``). The fake recogniser hears nothing in the
noise (as a real one would not); the echo gate keeps the echo from the VAD and from the
recogniser. A burst loud enough to look like speech may pause the reply: it resumes
from the word it stopped in, and the turn counts it in ``false_interruptions``.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the WebSocket server needs websockets")

from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server
from voxwire.aio import CallSurface
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts
from voxwire.sim import PROVIDERS, DialogReport, Network, Turn, place_dialog, synthesize

ANSWER = (
    "We are open from nine in the morning until five in the evening on weekdays. "
    "On Saturdays we open at ten and close at two. We are closed on Sundays."
)
CASES = [
    ("twilio", Network(echo_db=-15.0, seed=1)),
    ("vonage", Network(echo_db=-15.0, seed=2)),
    ("telnyx", Network(noise_bursts=0.7, noise_dbfs=-30.0, seed=3)),
    ("twilio", Network(echo_db=-15.0, noise_bursts=0.7, noise_dbfs=-30.0, seed=4)),
    ("jambonz", Network(echo_db=-15.0, noise_bursts=0.7, noise_dbfs=-30.0, seed=5)),
]


async def one_call(
    protocol: str, network: Network
) -> tuple[DialogReport, AgentCallResult, VoiceAgent]:
    def heard(n: int) -> str:
        return "when are you open" if n == 0 else ""  # noise is no words

    agent = VoiceAgent(FakeStt(heard), FakeLlm(lambda messages: ANSWER), FakeTts())
    results: list[AgentCallResult] = []

    def on_end(call: CallSurface, result: AgentCallResult) -> None:
        results.append(result)

    agent.on_end = on_end
    async with agent_server(agent, protocol) as url:
        ask = synthesize("When are you open?", PROVIDERS[protocol].default_rate)
        report = await place_dialog(
            url,
            protocol,
            [Turn(ask, "when are you open")],
            network=network,
            quiet=1.5,
            reply_timeout=25.0,
        )
        for _ in range(150):
            if results:
                break
            await asyncio.sleep(0.02)
    return report, results[0], agent


@pytest.fixture(scope="module")
def outcomes() -> list[tuple[DialogReport, AgentCallResult, VoiceAgent]]:
    async def main() -> list[tuple[DialogReport, AgentCallResult, VoiceAgent]]:
        runs = [one_call(p, n) for p, n in CASES]
        return list(await asyncio.wait_for(asyncio.gather(*runs), 90))

    return asyncio.run(main())


@pytest.mark.parametrize("case", range(len(CASES)))
def test_echo_and_noise_never_stop_the_reply(
    outcomes: list[tuple[DialogReport, AgentCallResult, VoiceAgent]], case: int
) -> None:
    report, result, _ = outcomes[case]
    (turn,) = result.turns
    assert not turn.interrupted, turn.log_line()
    assert [m.role for m in result.history.messages] == ["user", "assistant"]
    assert result.history.messages[1].content == ANSWER
    assert turn.reply_end_played is not None  # the reply played out
    _protocol, network = CASES[case]
    if network.noise_bursts:
        assert report.turns[0].reply_start is not None
    if network.noise_bursts == 0:
        # echo alone never pauses the reply
        assert turn.false_interruptions == 0, turn.log_line()
        assert report.clears == []


def test_the_noise_was_there(
    outcomes: list[tuple[DialogReport, AgentCallResult, VoiceAgent]],
) -> None:
    """The noisy calls carried several bursts (else the test would show nothing)."""
    for (report, _, _), (_, network) in zip(outcomes, CASES, strict=True):
        assert report.noise_bursts >= (3 if network.noise_bursts else 0)
