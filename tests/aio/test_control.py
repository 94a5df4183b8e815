"""The control API (voxwire.aio.control) over real sockets: an echo server with two
simulated calls up; the token is checked; the calls are listed with their state and
quality; one is muted (its audio stops reaching the phone while the other's goes on),
unmuted, then hung up (the phone sees a normal closure); and the CLI's options."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the callers' speech is made with espeak-ng")
pytest.importorskip("websockets", reason="the server needs websockets")

from tests.serving import serving
from voxwire.agents.pipeline import AgentCallResult, VoiceAgent
from voxwire.agents.server import agent_server, serve_echo
from voxwire.aio import Call
from voxwire.aio.control import Control, load_token
from voxwire.services.fake import FakeLlm, FakeStt, FakeTts
from voxwire.sim import CallPlan, place_call
from voxwire.sim.load import run_load

TOKEN = "a-control-token-of-some-length"


async def request(
    port: int, method: str, path: str, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = "" if token is None else f"Authorization: Bearer {token}\r\n"
    length = "Content-Length: 0\r\n" if method == "POST" else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{length}\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


def test_list_mute_unmute_and_hang_up_calls() -> None:
    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        urls: list[str] = []
        server = asyncio.create_task(
            serve_echo(
                "twilio",
                "127.0.0.1",
                0,
                stop=stop,
                ready=urls.append,
                control=Control(TOKEN),
                on_end=lambda c, s: None,
            )
        )
        while not urls:
            await asyncio.sleep(0.01)
        port = int(urls[0].rsplit(":", 1)[1].split("/")[0])
        seen: dict[str, Any] = {}
        seen["idle"] = await request(port, "GET", "/calls")
        seen["no token"] = await request(port, "GET", "/calls", token=None)
        seen["wrong token"] = await request(port, "GET", "/calls", token="x" * 30)
        load = asyncio.create_task(run_load(urls[0], "twilio", 2, duration=14.0, barge_every=0))
        for _ in range(200):
            await asyncio.sleep(0.05)
            listed = await request(port, "GET", "/calls")
            if len(listed[2]["calls"]) == 2:
                break
        seen["listed"] = listed
        one, other = (c["call_id"] for c in listed[2]["calls"])
        seen["mute"] = await request(port, "POST", f"/calls/{one}/mute")
        muted_at = {c["call_id"]: c for c in (await request(port, "GET", "/calls"))[2]["calls"]}
        await asyncio.sleep(3.0)  # a turn or two: the caller speaks, the echo answers
        seen["muted"] = (muted_at, (await request(port, "GET", f"/calls/{one}"))[2],
                         (await request(port, "GET", f"/calls/{other}"))[2])  # fmt: skip
        seen["unmute"] = await request(port, "POST", f"/calls/{one}/unmute")
        for _ in range(80):  # the phone talks again once it gives up waiting for a reply
            await asyncio.sleep(0.1)
            seen["unmuted"] = (await request(port, "GET", f"/calls/{one}"))[2]
            if seen["unmuted"]["audio_out_s"] > seen["muted"][1]["audio_out_s"]:
                break
        seen["get hangup"] = await request(port, "GET", f"/calls/{one}/hangup")
        seen["unknown"] = await request(port, "POST", "/calls/MZnothing/hangup")
        seen["bad action"] = await request(port, "POST", f"/calls/{one}/forward")
        seen["transfer"] = await request(port, "POST", f"/calls/{one}/transfer?target=sip:a@b")
        seen["no target"] = await request(port, "POST", f"/calls/{one}/transfer")
        seen["crlf target"] = await request(
            port, "POST", f"/calls/{one}/transfer?target=sip:a@b%0D%0AX:%20y"
        )
        seen["echo say"] = await request(port, "POST", f"/calls/{one}/say?text=Hello")
        seen["no text"] = await request(port, "POST", f"/calls/{one}/say")
        seen["hangup"] = await request(port, "POST", f"/calls/{one}/hangup")
        seen["report"] = await load
        seen["after"] = await request(port, "GET", "/calls")
        stop.set()
        await server
        return seen

    seen = asyncio.run(main())
    assert seen["idle"][:1] == (200,)
    assert seen["idle"][2] == {"calls": []}
    for key in ("no token", "wrong token"):
        status, headers, body = seen[key]
        assert status == 401
        assert headers["WWW-Authenticate"] == "Bearer"
        assert "token" in body["error"]

    status, headers, body = seen["listed"]
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    for call in body["calls"]:
        assert call["call_id"].startswith("MZ")
        assert call["protocol"] == "twilio"
        assert call["state"] == "up"
        assert call["muted"] is False
        assert call["quality"]["loss_ratio"] == 0
        assert 4.0 < call["quality"]["mos"] < 4.5
        assert call["duration_s"] > 0

    assert seen["mute"][0] == 200
    assert seen["mute"][2]["muted"] is True
    at_mute, muted, other = seen["muted"]
    one_id, other_id = muted["call_id"], other["call_id"]
    # the muted call sent no audio while the other answered its caller
    assert muted["audio_out_s"] == at_mute[one_id]["audio_out_s"]
    assert muted["muted_audio_s"] > 0.5
    assert other["audio_out_s"] > at_mute[other_id]["audio_out_s"] + 0.5
    assert other["muted_audio_s"] == 0
    assert seen["unmute"][2]["muted"] is False
    assert seen["unmuted"]["audio_out_s"] > muted["audio_out_s"]

    assert seen["get hangup"][0] == 405
    assert seen["get hangup"][1]["Allow"] == "POST"
    assert seen["unknown"][0] == 404
    assert seen["bad action"][0] == 404
    # a media stream cannot transfer its call: a clear refusal, and the call goes on
    assert seen["transfer"][0] == 409
    assert "twilio media stream cannot transfer" in seen["transfer"][2]["error"]
    assert seen["no target"][0] == 400
    assert seen["crlf target"][0] == 400
    assert seen["echo say"][0] == 409  # the echo agent says no text it is given
    assert "cannot say" in seen["echo say"][2]["error"]
    assert seen["no text"][0] == 400
    assert seen["hangup"][0] == 202
    assert seen["hangup"][2]["state"] == "closing"
    report = seen["report"]
    # the hung-up call was closed by the server with a normal closure; the other ran on
    assert report.completed == 1
    assert report.errors == {"1000": 1}
    assert seen["after"][2] == {"calls": []}


def test_the_voice_agent_says_a_text_it_is_given() -> None:
    """POST /calls/ID/say: the agent speaks the text to the phone and keeps it in the
    history; a second text while the first plays waits its turn; an empty one is 400."""
    results: list[AgentCallResult] = []

    def on_end(call: Call, result: AgentCallResult) -> None:
        results.append(result)

    agent = VoiceAgent(FakeStt(["unused"]), FakeLlm(lambda messages: "unused"), FakeTts())
    agent.on_end = on_end
    first, second = "This call may be recorded.", "An agent will join shortly."

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with agent_server(agent, "twilio", control=Control(TOKEN)) as url:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            # a caller who says nothing: whatever plays is what the control API asked for
            plan = CallPlan(np.zeros(1600, np.int16), quiet=1.0, reply_timeout=8.0, tail=0.5)
            call = asyncio.create_task(place_call(url, "twilio", plan))
            for _ in range(200):
                listed = (await request(port, "GET", "/calls"))[2]["calls"]
                if listed:
                    break
                await asyncio.sleep(0.02)
            call_id = listed[0]["call_id"]
            path = f"/calls/{call_id}/say?text="
            seen["first"] = await request(port, "POST", path + first.replace(" ", "%20"))
            seen["second"] = await request(port, "POST", path + second.replace(" ", "+"))
            seen["empty"] = await request(port, "POST", path)
            seen["report"] = await asyncio.wait_for(call, 30)
            for _ in range(150):
                if results:
                    break
                await asyncio.sleep(0.02)
        return seen

    seen = asyncio.run(main())
    assert seen["first"][0] == 202
    assert seen["first"][2]["state"] == "up"
    assert seen["second"][0] == 202
    assert seen["empty"][0] == 400
    report = seen["report"]
    assert np.count_nonzero(report.heard) > 0.5 * 8000  # the phone heard the speech
    (result,) = results
    said = [m.content for m in result.history.messages if m.role == "assistant"]
    assert said == [first, second]
    assert [t.user_text for t in result.turns] == ["", ""]


def test_load_token() -> None:
    assert load_token("0123456789abcdef") == "0123456789abcdef"
    with pytest.raises(ValueError, match="16"):
        load_token("short")
    with pytest.raises(ValueError, match="one of the two"):
        load_token()
    with pytest.raises(ValueError, match="empty"):
        Control("")


def test_load_token_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\nignored\n")
    assert load_token(file=str(path)) == TOKEN
    with pytest.raises(FileNotFoundError):
        load_token(file=str(tmp_path / "missing"))


def test_cli_control_options(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOXWIRE_CONTROL_TOKEN"}

    def serve(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voxwire", "serve", "--echo", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **(extra or {})},
        )

    missing = serve("--protocol", "twilio", "--control")
    assert missing.returncode == 2
    assert "VOXWIRE_CONTROL_TOKEN" in missing.stderr
    short = serve("--protocol", "twilio", "--control", extra={"VOXWIRE_CONTROL_TOKEN": "x"})
    assert short.returncode == 2
    assert "16 characters" in short.stderr
    alone = serve("--protocol", "twilio", "--control-token-file", str(tmp_path / "t"))
    assert alone.returncode == 2
    assert "needs --control" in alone.stderr
    tcp = serve("--protocol", "audiosocket", "--control", extra={"VOXWIRE_CONTROL_TOKEN": TOKEN})
    assert tcp.returncode == 2
    assert "no HTTP port" in tcp.stderr
    webrtc = serve("--protocol", "webrtc", "--control", extra={"VOXWIRE_CONTROL_TOKEN": TOKEN})
    assert webrtc.returncode == 2
    assert "--control" in webrtc.stderr
    port = serve("--protocol", "twilio", "--control-port", "0")
    assert port.returncode == 2
    assert "for --protocol sip" in port.stderr


def test_cli_serves_the_control_api(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    args = ["--protocol", "twilio", "--echo", "--port", "0", "--control",
            "--control-token-file", str(path), "-q"]  # fmt: skip
    with serving(*args) as server:
        assert asyncio.run(request(server.port, "GET", "/calls"))[:1] == (200,)
        assert asyncio.run(request(server.port, "GET", "/calls", token="y" * 20))[0] == 401
