"""bench/service_clients.py runs: its fake server answers every voxwire client, whose
output is checked before it is timed (no timing is asserted here)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import ssl
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the bench's fake server is aiohttp")
pytest.importorskip("websockets", reason="the bench's fake server is websockets")

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("service_clients", BENCH / "service_clients.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["service_clients"] = module
    spec.loader.exec_module(module)
    return module


sc = _load()


def test_the_bench_measures_every_voxwire_client_in_quick_mode() -> None:
    rows = asyncio.run(asyncio.wait_for(sc.run(quick=True, sdks=False), 60))
    assert [r["service"] for r in rows] == [p[0].service for p in sc.PAIRS]
    for row in rows:
        assert row["voxwire_us"] > 0
        assert row["voxwire_first_ms"] > 0
        assert "sdk_us" not in row
    table = sc.render(rows, 50, 1)
    assert "| LLM: OpenAI Chat Completions | token | - |" in table


def test_a_wrong_stream_fails_the_check() -> None:
    class Short(sc.OpenAIChat):  # type: ignore[misc, name-defined]
        async def stream(self, n, first):  # type: ignore[no-untyped-def]
            return sc._words(n - 1)

    with pytest.raises(AssertionError, match="wrong output"):
        asyncio.run(sc._checked(Short("http://127.0.0.1:9", "ws://127.0.0.1:9"), 5))


ELEVENLABS = [p for p in sc.PAIRS if p[2] == "elevenlabs"]


def test_the_elevenlabs_row_runs_over_tls_and_says_when_the_sdk_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sc, "PAIRS", ELEVENLABS)
    monkeypatch.setattr(sc, "_version", lambda dist: "")
    (row,) = asyncio.run(asyncio.wait_for(sc.run(quick=True), 60))
    assert row["voxwire_us"] > 0
    assert "sdk_us" not in row
    assert row["note"] == "elevenlabs not installed"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK reads ConnectionClosed.code
def test_the_elevenlabs_sdk_reaches_the_tls_fake_only_when_it_trusts_the_certificate() -> None:
    pytest.importorskip("elevenlabs", reason="the ElevenLabs SDK is not installed")

    async def check() -> None:
        async with sc.fake_server() as (http, ws, wss):
            assert wss.startswith("wss://127.0.0.1:")
            sdk = sc.ElevenLabsWsSdk(http, ws, wss)
            await sdk.setup()
            try:
                await sc._checked(sdk, 20)  # every sample, in order
                first = await sc.first_unit(sdk)
                assert first > 0
                trusted = os.environ.pop("SSL_CERT_FILE")
                try:  # the default CAs do not know the bench's certificate
                    with pytest.raises(ssl.SSLCertVerificationError):
                        await sc._checked(sdk, 5)
                finally:
                    os.environ["SSL_CERT_FILE"] = trusted
            finally:
                await sdk.close()

    asyncio.run(asyncio.wait_for(check(), 60))


def test_without_a_certificate_the_elevenlabs_row_says_it_ran_over_plain_ws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def none(directory: Path) -> None:
        raise sc.selfsigned.NoCertificate("neither cryptography nor openssl")

    monkeypatch.setattr(sc, "PAIRS", ELEVENLABS)
    monkeypatch.setattr(sc.selfsigned, "self_signed", none)
    (row,) = asyncio.run(asyncio.wait_for(sc.run(quick=True), 60))
    assert row["voxwire_us"] > 0
    assert "sdk_us" not in row
    assert row["note"].startswith("no certificate")
