"""The control API over a SIP server (voxwire.aio.control.serve_control), over real
sockets: SIPp calls the echo agent, the API lists the call by its SIP Call-ID with its
state and quality, mutes it, hangs it up (the BYE reaches SIPp) and transfers it (SIPp
gets the REFER with the target as Refer-To, and its NOTIFYs end the call); bad targets
are refused before anything reaches the wire, and a second transfer while one runs is
409; and ``voxwire serve --protocol sip --control`` serves it on ``--control-port``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.sip.test_sip_sipp import (
    HOST,
    Calls,
    SippRun,
    pytestmark,  # noqa: F401  (SIPp is needed here too)
    received,
    run,
    serving,
    sipp,
)
from voxwire.aio.control import MAX_TARGET, Control, serve_control
from voxwire.aio.sip import SipCallServer

TOKEN = "a-control-token-of-some-length"
TARGET = "sip:human@192.0.2.50:5060"


async def request(
    port: int, method: str, path: str, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    auth = "" if token is None else f"Authorization: Bearer {token}\r\n"
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


async def controlled(
    scenario: str, cwd: Path, drive: Any, **options: object
) -> tuple[SippRun, SipCallServer, dict[str, Any]]:
    """Serve SIP and its control API, run ``scenario`` once, and meanwhile ``drive(port,
    call_id, seen, server)`` once the call is listed; then close both."""
    calls = Calls()
    server = await serving(calls, **options)
    listener = await serve_control(
        Control(TOKEN, transfer_timeout=10.0), server.controlled_calls, HOST, 0
    )
    port = int(listener.sockets[0].getsockname()[1])
    seen: dict[str, Any] = {}
    try:
        call = asyncio.create_task(sipp(scenario, server.local_addr, cwd))
        for _ in range(250):
            await asyncio.sleep(0.02)
            listed = await request(port, "GET", "/calls")
            if listed[2]["calls"] and listed[2]["calls"][0]["state"] == "up":
                break
        seen["listed"] = listed
        call_id = listed[2]["calls"][0]["call_id"]
        await drive(port, call_id, seen, server)
        result = await call
        for _ in range(100):
            if server.calls_finished:
                break
            await asyncio.sleep(0.02)
        seen["after"] = await request(port, "GET", "/calls")
    finally:
        listener.close()
        await listener.wait_closed()
        await server.aclose()
    return result, server, seen


def server_call_id(result: SippRun) -> str:
    """The Call-ID of SIPp's INVITE, from its message log."""
    for line in result.messages.splitlines():
        if line.startswith("Call-ID:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Call-ID in SIPp's log")


def test_a_sip_call_is_listed_muted_and_hung_up(tmp_path: Path) -> None:
    async def drive(port: int, call_id: str, seen: dict[str, Any], _: SipCallServer) -> None:
        seen["no token"] = await request(port, "GET", "/calls", token=None)
        seen["wrong token"] = await request(port, "GET", "/calls", token="x" * 30)
        seen["one"] = await request(port, "GET", f"/calls/{call_id}")
        seen["mute"] = await request(port, "POST", f"/calls/{call_id}/mute")
        seen["unmute"] = await request(port, "POST", f"/calls/{call_id}/unmute")
        seen["echo say"] = await request(port, "POST", f"/calls/{call_id}/say?text=Hi")
        seen["other path"] = await request(port, "GET", "/metrics")
        seen["get hangup"] = await request(port, "GET", f"/calls/{call_id}/hangup")
        seen["hangup"] = await request(port, "POST", f"/calls/{call_id}/hangup")

    # a long RTP timeout: the BYE SIPp waits for is the control API's
    result, server, seen = run(
        controlled("server_hangs_up.xml", tmp_path, drive, idle_timeout=60.0), timeout=40
    )
    assert result.returncode == 0, result.stdout + result.errors
    assert received(result.messages, "BYE ") == 1
    status, headers, body = seen["listed"]
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    (call,) = body["calls"]
    assert call["protocol"] == "sip"
    assert call["state"] == "up"
    assert call["muted"] is False
    assert call["duration_s"] >= 0
    assert call["messages_in"] == 0  # the scenario sends no RTP
    assert call["quality"]["loss_ratio"] == 0
    assert 4.0 < call["quality"]["mos"] < 4.5
    assert call["call_id"] == server_call_id(result)
    for key in ("no token", "wrong token"):
        status, headers, body = seen[key]
        assert status == 401
        assert headers["WWW-Authenticate"] == "Bearer"
    assert seen["one"][2]["call_id"] == call["call_id"]
    assert seen["mute"][:1] == (200,)
    assert seen["mute"][2]["muted"] is True
    assert seen["unmute"][2]["muted"] is False
    assert seen["echo say"][0] == 409
    assert "cannot say" in seen["echo say"][2]["error"]
    assert seen["other path"][0] == 404
    assert seen["get hangup"][0] == 405
    assert seen["hangup"][0] == 202
    assert seen["hangup"][2]["state"] == "closing"
    assert seen["after"][2] == {"calls": []}
    assert server.calls_finished == 1


def test_a_sip_call_is_transferred_and_bad_targets_never_reach_the_wire(
    tmp_path: Path,
) -> None:
    bad = {
        "none": "",
        "http": "http://example.com/",
        "no scheme": "human@192.0.2.50",
        "crlf": "sip:human@192.0.2.50%0D%0AX-Injected:%20yes",
        "space": "sip:human@192.0.2.50%20x",
        "angle": "sip:human@192.0.2.50%3E",
        "long": "sip:" + "a" * MAX_TARGET,
    }

    async def drive(port: int, call_id: str, seen: dict[str, Any], server: SipCallServer) -> None:
        servers = [s for s in (server.sip, server.sip_tcp) if s is not None]
        for name, target in bad.items():
            seen[name] = await request(port, "POST", f"/calls/{call_id}/transfer?target={target}")
        seen["refers before"] = sum(s.counters["request_sent_REFER"] for s in servers)
        first = asyncio.create_task(
            request(port, "POST", f"/calls/{call_id}/transfer?target={TARGET}")
        )
        for _ in range(250):  # the REFER is out; SIPp waits 500 ms before its last NOTIFY
            if sum(s.counters["request_sent_REFER"] for s in servers):
                break
            await asyncio.sleep(0.01)
        seen["second"] = await request(port, "POST", f"/calls/{call_id}/transfer?target=tel:1")
        seen["transfer"] = await first

    result, server, seen = run(controlled("caller_transferred.xml", tmp_path, drive), timeout=40)
    assert result.returncode == 0, result.stdout + result.errors
    for name in bad:
        assert seen[name][0] == 400, (name, seen[name])
    assert "sip:, sips: or tel:" in seen["http"][2]["error"]
    assert "control character" in seen["crlf"][2]["error"]
    assert str(MAX_TARGET) in seen["long"][2]["error"]
    assert seen["refers before"] == 0
    assert seen["second"][0] == 409
    assert "in progress" in seen["second"][2]["error"]
    status, _, body = seen["transfer"]
    assert status == 200, body
    assert body["transfer"] == {"target": TARGET, "transferred": True, "statuses": [202, 100, 200]}
    assert body["state"] == "closing"
    # SIPp checked the Refer-To and got the BYE that ends the transferred call
    assert received(result.messages, "REFER ") == 1
    assert received(result.messages, "BYE ") == 1
    assert f"Refer-To: <{TARGET}>" in result.messages
    assert "X-Injected" not in result.messages
    assert server.sip.counters["request_sent_REFER"] == 1
    assert seen["after"][2] == {"calls": []}


def test_cli_serves_the_control_api_of_sip_calls(tmp_path: Path) -> None:
    env = {**os.environ, "VOXWIRE_CONTROL_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "voxwire", "serve", "--protocol", "sip", "--echo", "--host",
         HOST, "--port", "0", "--control", "--control-port", "0", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline(), server.stdout.readline()]
        assert " on sip:127.0.0.1:" in lines[0], lines
        assert "control API on http://127.0.0.1:" in lines[1], lines
        port = int(lines[1].rsplit(":", 1)[1].split("/")[0])
        assert run(request(port, "GET", "/calls"))[:1] == (200,)
        assert run(request(port, "GET", "/calls", token="y" * 20))[0] == 401
    finally:
        server.terminate()
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "stopped" in out


def test_cli_control_port_refusals() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VOXWIRE_CONTROL_TOKEN"}

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voxwire", "serve", "--echo", "--port", "0", *args],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip

    alone = serve("--protocol", "sip", "--control-port", "0")
    assert alone.returncode == 2
    assert "needs --control" in alone.stderr
    missing = serve("--protocol", "sip", "--control")
    assert missing.returncode == 2
    assert "VOXWIRE_CONTROL_TOKEN" in missing.stderr
    ws = serve("--protocol", "twilio", "--control-port", "0")
    assert ws.returncode == 2
    assert "for --protocol sip" in ws.stderr
