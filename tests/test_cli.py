"""The voxwire command line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving import serving
from voxwire import __version__
from voxwire.benchmarks._harness import Impl, Table, time_interleaved
from voxwire.cli import main


def test_bench_g711_prints_its_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "g711"]) == 0
    out = capsys.readouterr().out
    assert "G.711, one 20 ms frame" in out
    assert "G.711, 1 s blocks" in out
    for op in ("mu-law decode", "A-law decode"):
        assert out.count(op) == 2
    for op in ("mu-law encode", "A-law encode"):  # and again on talk and pauses
        assert out.count(op) == 3
        assert out.count(f"{op}, talk + pauses") == 1


def test_bench_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "g711", "--json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    assert [t["title"][:5] for t in tables] == ["G.711", "G.711"]
    for t in tables:
        assert all(len(row) == len(t["columns"]) for row in t["rows"])


def test_unknown_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--only", "nope"])
    assert exc.value.code == 2
    assert "unknown benchmark nope" in capsys.readouterr().err


def test_console_entry_point_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxwire", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"voxwire {__version__}"


def test_table_render_aligns_columns() -> None:
    table = Table("T", ["name", "value"], [["a", "1"], ["long name", "12345"]], ["note"])
    lines = table.render().splitlines()
    assert lines[0] == "T"
    assert lines[1] == "name       value"
    assert lines[3] == "a              1"
    assert lines[4] == "long name  12345"
    assert lines[5] == "  note"


def test_time_interleaved_visits_every_implementation() -> None:
    seen: dict[str, list[object]] = {"a": [], "b": []}
    impls = [Impl("a", seen["a"].append), Impl("b", lambda x, y: seen["b"].append((x, y)), (9,))]
    result = time_interleaved(impls, list(range(10)), batch=3, rounds=4)
    assert set(result) == {"a", "b"}
    assert all(len(v) == 4 and (v >= 0).all() for v in result.values())
    assert len(seen["a"]) == 3 + 4 * 3  # warm-up batch + rounds
    assert all(y == 9 for _, y in seen["b"])
    with pytest.raises(ValueError, match="empty"):
        time_interleaved(impls, [], batch=1, rounds=1)


def test_every_registered_benchmark_has_a_run_function() -> None:
    import importlib

    from voxwire.benchmarks import BENCHMARKS

    for name, module in BENCHMARKS.items():
        assert callable(importlib.import_module(module).run), name


def test_bench_plc_quick(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "plc"]) == 0
    out = capsys.readouterr().out
    assert "Packet-loss concealment" in out
    assert out.count("bursts of") == 4


KEYS = "k2:test-key-not-a-secret-0002\nk1:test-key-not-a-secret-0001"


def test_token_mints_with_the_first_key_and_verifies_with_the_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from voxwire.security import CallTokens, parse_keys

    monkeypatch.setenv("VOXWIRE_TOKEN_KEY", KEYS)
    assert main(["token", "--ttl", "60", "--call", "CA42"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("vx1.k2.")
    claims = CallTokens(parse_keys(KEYS)).verify(token)
    assert (claims.call, claims.expires_at - claims.issued_at) == ("CA42", 60)
    key_file = tmp_path / "keys"
    key_file.write_text("k1:test-key-not-a-secret-0001\n")
    monkeypatch.delenv("VOXWIRE_TOKEN_KEY")
    assert main(["token", "--call", "CA42", "--key-file", str(key_file)]) == 0
    assert capsys.readouterr().out.startswith("vx1.k1.")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--call", "x"], None, "give --key-file or set $VOXWIRE_TOKEN_KEY"),
        (["--call", "x"], "k1:short", "the secret has 5 bytes"),
        (["--call", "x", "--key-file", "/nonexistent/keys"], None, "cannot read the key file"),
        (["--call", "x", "--key-id", "k9"], KEYS, "unknown key id 'k9'"),
    ],
)
def test_token_errors_are_messages_without_a_traceback(
    args: list[str],
    env: str | None,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VOXWIRE_TOKEN_KEY", raising=False)
    if env is not None:
        monkeypatch.setenv("VOXWIRE_TOKEN_KEY", env)
    with contextlib.suppress(SystemExit):
        assert main(["token", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert "test-key-not-a-secret" not in err


def test_serve_with_a_key_set_accepts_a_minted_token_once() -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VOXWIRE_TOKEN_KEY": KEYS}
    command = [sys.executable, "-m", "voxwire"]
    with serving("--protocol", "twilio", "--echo", "--port", "0", "-q", env=env) as server:
        url = server.url
        token = subprocess.run(
            [*command, "token", "--call", "CA1"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()

        async def status(query: str) -> int:
            try:
                async with connect(url + query, open_timeout=5):
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        async def statuses() -> list[int]:
            return [await status(q) for q in ("?token=nope", f"?token={token}", f"?token={token}")]

        assert asyncio.run(statuses()) == [401, 101, 401]
    err = server.stderr
    assert "401 token already used" in err
    assert token not in err


def _not_a_wav(tmp: Path) -> str:
    path = tmp / "notes.wav"
    path.write_text("not audio")
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--protocol", "twilio", "--echo", "--hangover-ms", "9999"], "expected 0 to 500"),
        (["serve", "--protocol", "twilio", "--echo", "--lead", "-1"], "expected 0 to 1, got '-1'"),
        (["serve", "--protocol", "twilio", "--echo", "--port", "99999"], "expected 0 to 65535"),
        (["serve", "--protocol", "twilio", "--echo", "--port", "x"], "expected an integer"),
        (["call", "--protocol", "twilio", "ws://h/", "--say", "WAV"], "is not a WAV file"),
        (["call", "--protocol", "twilio", "ws://h/", "--say", "/no/such.wav"], "no such file"),
        (["call", "--protocol", "twilio", "ws://h/", "--loss", "150"], "expected 0 to 100"),
        (["call", "--protocol", "twilio", "ws://h/", "--timeout", "0"], "expected 0.1 to"),
        (["call", "--protocol", "twilio", "ws://h/", "--rate", "7999"], "expected 8000 to 48000"),
    ],
)
def test_bad_values_are_refused_at_parse_time_without_a_traceback(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = [_not_a_wav(tmp_path) if a == "WAV" else a for a in args]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_call_shows_the_refusal_and_takes_a_token(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VOXWIRE_TOKEN": "shared-test-token"}
    command = [sys.executable, "-m", "voxwire"]
    with serving("--protocol", "vonage", "--echo", "--port", "0", "-q", env=dict(env)) as server:
        url = server.url
        call = [*command, "call", "--protocol", "vonage", url, "--say-text", "Hello there."]
        env.pop("VOXWIRE_TOKEN")
        wrong = subprocess.run(
            [*call, "--token", "nope"], capture_output=True, text=True, env=env, timeout=60
        )
        assert wrong.returncode == 1
        assert "refused by the server: HTTP 401 wrong token" in wrong.stderr
        assert "Traceback" not in wrong.stderr
        right = subprocess.run(
            [*call, "--token", "shared-test-token"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert right.returncode == 0, right.stderr
        assert "echo correlation" in right.stdout


def test_serve_caps_its_connections() -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    serve = ["--protocol", "twilio", "--echo", "--port", "0", "--max-connections", "1", "-q"]
    with serving(*serve, env=env) as server:
        url = server.url

        async def second_one() -> tuple[int, bytes]:
            async with connect(url, open_timeout=5):
                with pytest.raises(InvalidStatus) as info:
                    async with connect(url, open_timeout=5):
                        pass
                response = info.value.response
                return response.status_code, bytes(response.body)

        assert asyncio.run(second_one()) == (503, b"too many connections (max 1)\n")
    assert "503 too many connections (max 1)" in server.stderr


def test_serve_webrtc_refuses_the_options_it_does_not_honour(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["serve", "--protocol", "webrtc", "--echo", "--audit-log", "a.jsonl"]
    assert main([*args, "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers, --audit-log: not available with --protocol webrtc" in err


def test_serve_sip_refuses_the_options_it_does_not_take() -> None:
    options = ["--key-file", "keys", "--workers", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "voxwire", "serve", "--protocol", "sip", "--echo", *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers, --key-file: not available with --protocol sip" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("workers", [0, 2])
def test_serve_on_uvloop_echoes_a_call(workers: int) -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    pytest.importorskip("uvloop", reason="--loop uvloop needs voxwire[uvloop]")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    serve = ["--protocol", "twilio", "--echo", "--port", "0", "--loop", "uvloop", "-q"]
    if workers:
        serve += ["--workers", str(workers)]
    with serving(*serve, env=env) as server:
        call = [sys.executable, "-m", "voxwire", "call", "--protocol", "twilio", server.url]
        done = subprocess.run(
            [*call, "--say-text", "Hello there."], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "echo correlation" in done.stdout
    line = "voxwire serve: event loop uvloop.Loop"
    if not workers:
        assert line in server.stdout
    else:  # each worker runs its own loop; the supervisor passes on what they print
        for index in range(workers):
            assert f"[worker {index}] {line}" in server.stderr


def test_serve_on_picows_echoes_a_call_and_answers_health() -> None:
    pytest.importorskip("espeakng_loader", reason="the caller's speech is made with espeak-ng")
    pytest.importorskip("picows", reason="--ws picows needs voxwire[picows]")
    import urllib.request

    serve = ["--protocol", "twilio", "--echo", "--port", "0", "--ws", "picows", "-q"]
    with serving(*serve) as server:
        call = [sys.executable, "-m", "voxwire", "call", "--protocol", "twilio", server.url]
        done = subprocess.run(
            [*call, "--say-text", "Hello there."], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "echo correlation" in done.stdout
        health = f"http://127.0.0.1:{server.port}/health"
        with urllib.request.urlopen(health, timeout=10) as answer:
            assert answer.read() == b"ok\n"


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--protocol", "audiosocket"], "--protocol audiosocket is not served over a WebSocket"),
        (["--protocol", "sip"], "--protocol sip is not served over a WebSocket"),
        (["--protocol", "twilio", "--control"], "no --control there"),
    ],
)
def test_serve_refuses_picows_where_it_cannot_serve(
    options: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *options, "--echo", "--port", "0", "--ws", "picows"]) == 2
    assert f"voxwire serve: --ws picows: {why}" in capsys.readouterr().err


def test_serve_without_uvloop_refuses_the_loop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert main(["serve", "--protocol", "twilio", "--echo", "--port", "0", "--loop", "uvloop"]) == 2
    err = capsys.readouterr().err
    assert "--loop uvloop needs uvloop" in err
    assert "Traceback" not in err
