"""The upgrade decisions the WebSocket adapters share: the token check and the subprotocol."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.aio.provider import EchoLog, echo_handler
from voxwire.aio.aiohttp_adapter import media_stream_handler
from voxwire.aio.handshake import SUBPROTOCOLS, UpgradeCheck, check_upgrade
from voxwire.aio.websockets_server import serve
from voxwire.protocols.jambonz import SUBPROTOCOL
from voxwire.security import TokenAuth


def test_no_auth_accepts_every_request() -> None:
    assert check_upgrade(None, {}, {}) == UpgradeCheck(authenticated=True, refuse=False)


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {"token": "k"}),
        ({"X-Voxwire-Token": "k"}, {}),
        ({"authorization": "Bearer k"}, {}),
    ],
)
def test_the_token_in_the_request_authenticates(
    headers: dict[str, str], query: dict[str, str]
) -> None:
    for auth in (TokenAuth("k"), TokenAuth("k", custom_parameter=None)):
        assert check_upgrade(auth, headers, query) == UpgradeCheck(True, False)


def test_a_wrong_token_is_refused_and_a_missing_one_only_when_it_cannot_come_later() -> None:
    deferred = TokenAuth("k")
    strict = TokenAuth("k", custom_parameter=None)
    assert check_upgrade(deferred, {}, {}) == UpgradeCheck(False, False)
    assert check_upgrade(strict, {}, {}) == UpgradeCheck(False, True, "missing token")
    for auth in (deferred, strict):
        assert check_upgrade(auth, {}, {"token": "bad"}) == UpgradeCheck(False, True, "wrong token")
        assert check_upgrade(auth, {"x-voxwire-token": "bad"}, {}) == UpgradeCheck(
            False, True, "wrong token"
        )


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 15)

    return asyncio.run(bounded())


async def offered_to_websockets(offer: list[str]) -> str | None:
    async with serve(echo_handler(EchoLog()), "jambonz", "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        protocols = [Subprotocol(p) for p in offer]
        async with connect(f"ws://127.0.0.1:{port}/", subprotocols=protocols) as ws:
            return ws.subprotocol


async def offered_to_aiohttp(offer: list[str]) -> str | None:
    app = web.Application()
    app.router.add_get("/media", media_stream_handler(echo_handler(EchoLog()), "jambonz"))
    async with TestServer(app, host="127.0.0.1") as server:
        protocols = [Subprotocol(p) for p in offer]
        async with connect(f"ws://127.0.0.1:{server.port}/media", subprotocols=protocols) as ws:
            return ws.subprotocol


@pytest.mark.parametrize("adapter", [offered_to_websockets, offered_to_aiohttp])
def test_the_adapters_accept_a_registered_subprotocol_and_no_other(adapter: Any) -> None:
    assert SUBPROTOCOLS == (SUBPROTOCOL,)
    assert run(adapter(["chat", SUBPROTOCOL])) == SUBPROTOCOL
    assert run(adapter(["chat"])) is None
