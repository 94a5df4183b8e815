"""``voxwire serve --agent demo --llm/--stt/--tts ...``: services chosen on the command line.

The server runs as its own process (``python -m voxwire serve``), with its services
pointed at the local fakes of :mod:`voxwire.services.testing` over real sockets on
127.0.0.1, and the simulated phone calls it for one turn: what the caller said reaches
the chosen STT and LLM, and what the caller hears is the fake LLM's reply, spoken by the chosen TTS.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the fake LLM server is aiohttp")
pytest.importorskip("websockets", reason="the agent's server needs websockets")
pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")

from voxwire.services.testing.llm import FakeServer, Script, openai_text
from voxwire.services.testing.stt import KEY as DEEPGRAM_KEY
from voxwire.services.testing.stt import FakeDeepgram
from voxwire.services.testing.tts import CHAR_SECONDS, ElevenLabsFake
from voxwire.sim.caller import aligned_correlation
from voxwire.sim.dialog import DialogReport, Turn, place_dialog
from voxwire.sim.speech import synthesize

QUESTION = "What are your opening hours?"
REPLY = "We are open from eight until six on weekdays."
WORDS = ["We", " are", " open", " from", " eight", " until", " six", " on", " weekdays."]

# fake keys for the fake servers: the tests check that none of them is ever printed
LLM_KEY = "test-llm-key-not-real"
TTS_KEY = "test-tts-key-not-real"

READY = re.compile(r"on (ws://\S+)")


@asynccontextmanager
async def serve(
    args: Sequence[str], env: Mapping[str, str]
) -> AsyncIterator[tuple[str, list[str]]]:
    """Run ``voxwire serve`` with ``args``; yield its URL and the banner lines, then stop
    it with SIGTERM (its output is appended to the banner list once it has exited)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voxwire",
        "serve",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if not line:
                _, err = await proc.communicate()
                raise AssertionError(f"voxwire serve stopped: {err.decode()}")
            lines.append(line.rstrip())
            found = READY.search(line)
            url = found.group(1) if found else None
        yield url, lines
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        lines += out.decode().splitlines() + err.decode().splitlines()
    assert proc.returncode == 0, "\n".join(lines)


async def one_turn(url: str, protocol: str, rate: int) -> DialogReport:
    speech = synthesize(QUESTION, rate, voice="en-us", wpm=150, seed=3)
    turns = [Turn(), Turn(speech, QUESTION)]  # the greeting, then the question
    return await asyncio.wait_for(
        place_dialog(url, protocol, turns, quiet=0.7, reply_timeout=12.0), 40
    )


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 90))  # type: ignore[arg-type]


async def espeak_reply(rate: int) -> np.ndarray:
    """The reply as the demo's espeak-ng voice says it, at ``rate``."""
    from voxwire.resample import resample
    from voxwire.services.tts_espeak import EspeakTts

    tts = EspeakTts()
    async with tts.stream() as s:
        s.push(REPLY)
        s.end_input()
        pcm = np.concatenate([chunk.pcm async for chunk in s])
    return resample(pcm, tts.sample_rate, rate)


def test_serve_demo_with_an_openai_compatible_llm_speaks_its_reply() -> None:
    pytest.importorskip("pocketsphinx", reason="the demo's recogniser is pocketsphinx")
    requests = []

    async def main() -> None:
        scripts = [Script(openai_text(WORDS)) for _ in range(3)]
        async with FakeServer(scripts) as llm:
            args = [
                "--protocol",
                "vonage",
                "--agent",
                "demo",
                "--llm",
                f"openai-compatible:{llm.base}/v1",
                "--model",
                "fake-model",
            ]
            async with serve(args, {"OPENAI_API_KEY": LLM_KEY}) as (url, banner):
                report = await one_turn(url, "vonage", 16000)
            requests.extend(llm.requests)
        assert f"llm openai-compatible, model fake-model, at {llm.base}/v1, no key" in "\n".join(
            banner
        )
        assert LLM_KEY not in "\n".join(banner)

        # the demo's prompt and tools went to the chosen model, with what the caller said
        request = requests[0]
        assert request.path == "/v1/chat/completions"
        assert "Authorization" not in request.headers  # OPENAI_API_KEY is for OpenAI only
        body = request.body
        assert body["model"] == "fake-model"
        assert body["stream"] is True
        assert "Harbor Dental" in body["messages"][0]["content"]
        assert "opening" in body["messages"][-1]["content"]
        tools = {t["function"]["name"] for t in body["tools"]}
        assert {"search_knowledge", "book_appointment"} <= tools

        # and the caller heard the fake model's reply in the demo's voice
        turn = report.turns[1]
        assert turn.reply_start is not None
        reference = await espeak_reply(report.rate)
        # espeak-ng varies a little from run to run (a few samples here and there): the
        # first 1.2 s of two renderings of the reply correlate at 0.6-0.8, those of the
        # reply with the apology, the greeting or the rules model's answer at under 0.2.
        # Only the start is compared, so that a pause in the playout (a busy machine)
        # cannot split it.
        value, _ = aligned_correlation(reference[: report.rate * 12 // 10], turn.heard)
        assert value > 0.45, value
        assert len(turn.heard) == pytest.approx(len(reference), rel=0.25)

    run(main())


def test_serve_demo_on_the_hosted_stack_with_keys_from_named_variables() -> None:
    """Deepgram + an OpenAI model + ElevenLabs, every one a local fake, on an 8 kHz line."""
    seen = {}

    async def main() -> None:
        scripts = [Script(openai_text(WORDS)) for _ in range(3)]
        async with (
            FakeServer(scripts) as llm,
            FakeDeepgram([QUESTION], interim_every=0.0) as stt,
            ElevenLabsFake(rate=8000, key=TTS_KEY) as tts,
        ):
            args = [
                "--protocol",
                "twilio",
                "--agent",
                "demo",
                "--stt",
                f"deepgram:ws://127.0.0.1:{stt.port}",
                "--stt-key-env",
                "VOXWIRE_TEST_STT_KEY",
                "--llm",
                f"openai:{llm.base}/v1",
                "--model",
                "gpt-test",
                "--llm-key-env",
                "VOXWIRE_TEST_LLM_KEY",
                "--tts",
                f"elevenlabs:{tts.base}",
                "--voice",
                "voice-1",
                "--tts-key-env",
                "VOXWIRE_TEST_TTS_KEY",
            ]
            env = {
                "VOXWIRE_TEST_STT_KEY": DEEPGRAM_KEY,
                "VOXWIRE_TEST_LLM_KEY": LLM_KEY,
                "VOXWIRE_TEST_TTS_KEY": TTS_KEY,
            }
            async with serve(args, env) as (url, output):
                report = await one_turn(url, "twilio", 8000)
            seen.update(stt=stt.sessions, llm=llm.requests, tts=tts, report=report)
        text = "\n".join(output)
        for key in (DEEPGRAM_KEY, LLM_KEY, TTS_KEY):
            assert key not in text
        assert "key from $VOXWIRE_TEST_LLM_KEY" in text

    run(main())
    # the 8 kHz line went to Deepgram as mu-law at 8 kHz, not resampled
    session = seen["stt"][0]
    assert session.query["encoding"] == "mulaw"
    assert session.query["sample_rate"] == "8000"
    # what Deepgram heard went to the model, with the named variable's key
    request = seen["llm"][0]
    assert request.headers["Authorization"] == f"Bearer {LLM_KEY}"
    assert request.body["model"] == "gpt-test"
    assert request.body["messages"][-1] == {"role": "user", "content": QUESTION}
    # ElevenLabs spoke the model's reply at the line's rate
    tts = seen["tts"]
    assert any("output_format=pcm_8000" in p and "/voice-1/" in p for p in tts.paths)
    spoken = [
        "".join(m.get("text", "") for m in ctx.messages[1:]).strip()
        for ctx in tts.contexts.values()
    ]
    assert REPLY in spoken
    turn = seen["report"].turns[1]
    assert turn.reply_start is not None
    # the fake speaks CHAR_SECONDS per character: the caller heard the whole reply
    assert turn.heard_duration == pytest.approx(len(REPLY) * CHAR_SECONDS, abs=0.1)


def test_serve_refuses_bad_service_options_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from voxwire.cli import main

    cases = [
        (["--llm", "gpt"], "unknown service 'gpt'"),
        (["--llm", "openai"], "set OPENAI_API_KEY"),
        (["--llm", "openai-compatible:http://127.0.0.1:9/v1"], "needs --model"),
        (["--tts", "elevenlabs", "--tts-key-env", "VOXWIRE_TEST_TTS_KEY"], "needs --voice"),
        (["--stt", "deepgram:http://127.0.0.1:9"], "ws:// or wss:// URL"),
        (["--voice", "alloy"], "--voice needs --tts"),
    ]
    for name in [k for k in os.environ if k.endswith("_API_KEY")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VOXWIRE_TEST_TTS_KEY", TTS_KEY)
    for args, message in cases:
        assert main(["serve", "--protocol", "twilio", "--agent", "demo", *args]) == 2, args
        out, err = capsys.readouterr()
        assert message in err, (args, err)
        assert TTS_KEY not in out + err
    # services are for an agent, and a factory must take them
    assert main(["serve", "--protocol", "twilio", "--echo", "--llm", "rules"]) == 2
    assert "need --agent" in capsys.readouterr().err
    agent = "voxwire.agents.echo:echo_handler"
    assert main(["serve", "--protocol", "twilio", "--agent", agent, "--llm", "rules"]) == 2
    assert "takes no services= argument" in capsys.readouterr().err
    # voxwire demo takes the same options, with the same errors
    assert main(["demo", "--llm", "anthropic"]) == 2
    assert "set ANTHROPIC_API_KEY" in capsys.readouterr().err


def test_the_demo_call_runs_on_a_chosen_model() -> None:
    """``voxwire demo --llm ...``: the scripted call, here its first question only."""
    pytest.importorskip("pocketsphinx", reason="the demo's recogniser is pocketsphinx")
    from voxwire.agents.demo import DemoReport, run_demo
    from voxwire.services.registry import ServiceChoice

    async def main() -> tuple[DemoReport, int]:
        async with FakeServer([Script(openai_text(WORDS)) for _ in range(3)]) as llm:
            choice = ServiceChoice.parse(llm=f"openai-compatible:{llm.base}/v1", model="m")
            report = await run_demo("vonage", services=choice, script=[(QUESTION, None)])
            return report, len(llm.requests)

    report, requests = asyncio.run(asyncio.wait_for(main(), 60))
    assert requests == 1
    assert report.engines.startswith("stt pocketsphinx; llm openai-compatible, model m, at ")
    assert report.engines.endswith("; tts espeak")
    assert report.text().startswith(f"voxwire demo: Harbor Dental on vonage, {report.engines}")
    turn = report.turns[1]
    assert turn.said == QUESTION
    assert "opening" in turn.stt
    assert turn.agent == REPLY
    assert turn.heard == REPLY
    assert report.errors == {}


def test_serve_webrtc_takes_the_same_service_options(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("aiortc", reason="voxwire serve --protocol webrtc needs aiortc")
    from voxwire.cli import main

    webrtc = ["serve", "--protocol", "webrtc"]
    assert main([*webrtc, "--agent", "demo", "--llm", "gpt"]) == 2
    assert "--llm: unknown service 'gpt'" in capsys.readouterr().err
    assert main([*webrtc, "--echo", "--llm", "rules"]) == 2
    assert "need --agent" in capsys.readouterr().err
    agent = "voxwire.agents.echo:echo_handler"
    assert main([*webrtc, "--agent", agent, "--llm", "rules"]) == 2
    assert "takes no services= argument" in capsys.readouterr().err
