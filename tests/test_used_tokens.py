"""Used-token memory: in the process and in an SQLite file that the workers of one host
share, so that a signed token opens one connection however many processes serve."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tests.serving import serving
from voxwire.security import CallTokens, TokenError
from voxwire.used_tokens import MemoryUsedTokens, SqliteUsedTokens, UsedTokens

KEYS = "k1:test-key-not-a-secret-0123456789"


def stores(tmp_path: Path) -> list[UsedTokens]:
    return [MemoryUsedTokens(max_used=3), SqliteUsedTokens(tmp_path / "used.sqlite", max_used=3)]


@pytest.mark.parametrize("kind", [0, 1], ids=["memory", "sqlite"])
def test_a_claim_holds_until_it_expires_and_a_full_store_fails_closed(
    kind: int, tmp_path: Path
) -> None:
    used = stores(tmp_path)[kind]
    used.claim("a", until=10.0, now=0.0)
    with pytest.raises(TokenError, match=r"^token already used$"):
        used.claim("a", until=10.0, now=5.0)
    used.claim("b", until=20.0, now=5.0)
    used.claim("c", until=20.0, now=5.0)
    with pytest.raises(TokenError, match="too many live tokens"):
        used.claim("d", until=20.0, now=5.0)
    used.claim("d", until=20.0, now=11.0)  # "a" expired and made room
    with pytest.raises(TokenError, match=r"^token already used$"):
        used.claim("b", until=20.0, now=11.0)


def test_two_handles_on_one_file_share_the_claims(tmp_path: Path) -> None:
    path = tmp_path / "used.sqlite"
    one, two = SqliteUsedTokens(path), SqliteUsedTokens(path)
    tokens_one = CallTokens({"k1": b"0123456789abcdef"}, used=one, clock=lambda: 1000.0)
    tokens_two = CallTokens({"k1": b"0123456789abcdef"}, used=two, clock=lambda: 1000.0)
    token = tokens_one.mint("CA1", ttl=60)
    assert tokens_two.verify(token).call == "CA1"
    with pytest.raises(TokenError, match=r"^token already used$"):
        tokens_one.verify(token)
    assert len(one) == len(two) == 1
    # a token verified without consuming it is not remembered
    other = tokens_one.mint("CA2", ttl=60)
    tokens_two.verify(other, consume=False)
    assert tokens_one.verify(other).call == "CA2"


def _claim(used: SqliteUsedTokens, jti: str) -> str:
    try:
        used.claim(jti, until=2e9, now=1e9)
    except TokenError as exc:
        return str(exc)
    return "won"


def _claim_all(path: str, jtis: list[str]) -> list[tuple[str, str]]:
    used = SqliteUsedTokens(path, timeout=10.0)
    return [(jti, _claim(used, jti)) for jti in jtis]


def test_processes_racing_for_the_same_tokens_each_win_one_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "used.sqlite")
    SqliteUsedTokens(path).close()
    jtis = [f"jti-{i}" for i in range(60)]
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_claim_all, [path] * 4, [jtis, jtis[::-1], jtis, jtis[::-1]]))
    outcomes = [outcome for result in results for outcome in result]
    assert sorted(jti for jti, said in outcomes if said == "won") == sorted(jtis)
    assert {said for _, said in outcomes} == {"won", "token already used"}


def test_a_broken_store_refuses_the_token_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "used.sqlite"
    used = SqliteUsedTokens(path)
    used._db.execute("DROP TABLE used_tokens")
    with pytest.raises(TokenError, match="token store unavailable: OperationalError"):
        used.claim("a", until=10.0, now=0.0)


def test_serve_refuses_a_store_it_cannot_open(tmp_path: Path) -> None:
    env = {**os.environ, "VOXWIRE_TOKEN_KEY": KEYS}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "voxwire", "serve", "--protocol", "twilio", "--echo"),
            *("--used-tokens", str(tmp_path / "no" / "such" / "dir" / "used.sqlite")),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--used-tokens" in done.stderr
    assert "unable to open" in done.stderr
    assert "Traceback" not in done.stderr
    assert "test-key-not-a-secret" not in done.stderr


def test_workers_share_the_used_tokens() -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VOXWIRE_TOKEN_KEY": KEYS}
    command = [sys.executable, "-m", "voxwire"]
    args = ["--protocol", "twilio", "--echo", "--port", "0", "--workers", "2"]
    with serving(*args, env=env) as server:
        url = server.url
        minted = subprocess.run(
            [*command, "token", "--call", "CA1"], capture_output=True, text=True, env=env
        )
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()

        async def status(query: str) -> int:
            try:
                async with connect(url + query, open_timeout=5):
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        async def statuses() -> list[int]:
            # the kernel spreads connections over the workers by their addresses: sixteen
            # replays all reach the same worker once in 65536 runs
            return [await status(f"?token={token}") for _ in range(17)]

        assert asyncio.run(statuses()) == [101] + [401] * 16
    err = server.stderr
    assert err.count("401 token already used") == 16, err
    assert token not in err
