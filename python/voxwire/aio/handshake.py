"""What every WebSocket adapter decides before the upgrade: the token, the subprotocol.

The adapters (:mod:`voxwire.aio.websockets_server`, :mod:`voxwire.aio.asgi`,
:mod:`voxwire.aio.aiohttp_adapter`) each read the upgrade request in their framework's
way and hand the parts to these functions, so the decisions are made in one place:

* :func:`check_upgrade`: whether the request carries the :class:`~voxwire.security.TokenAuth`
  token, and whether the upgrade must be refused because it does not and cannot carry it
  later (``TokenAuth.deferred`` is false: no token in the start message either);
* :func:`~voxwire.protocols.registry.select_subprotocol`: the WebSocket subprotocol to
  accept from those the client offered (jambonz asks for ``audio.jambonz.org``).

>>> from voxwire.security import TokenAuth
>>> check_upgrade(TokenAuth("k", custom_parameter=None), {}, {"token": "nope"})
UpgradeCheck(authenticated=False, refuse=True)
>>> check_upgrade(TokenAuth("k"), {}, {})
UpgradeCheck(authenticated=False, refuse=False)
>>> check_upgrade(None, {}, {})
UpgradeCheck(authenticated=True, refuse=False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from voxwire.protocols.registry import SUBPROTOCOLS, select_subprotocol
from voxwire.security import TokenAuth

__all__ = ["SUBPROTOCOLS", "UpgradeCheck", "check_upgrade", "select_subprotocol"]


@dataclass(frozen=True, slots=True)
class UpgradeCheck:
    """The token check of one upgrade request.

    ``authenticated`` is true when the request carried the token, or when no token is
    asked for; a call that is not authenticated yet must show the token in its start
    message. ``refuse`` is true when the adapter must answer the request with an error
    instead of upgrading (HTTP 401, or a close before ``websocket.accept`` in ASGI).
    """

    authenticated: bool
    refuse: bool


def check_upgrade(
    auth: TokenAuth | None, headers: Mapping[str, str], query: Mapping[str, str]
) -> UpgradeCheck:
    """Check an upgrade request's ``headers`` and ``query`` parameters against ``auth``.

    Parameters
    ----------
    auth
        The token the server requires, or ``None`` for none.
    headers
        The request's headers (names in any case).
    query
        The parameters of the request URL's query string.
    """
    if auth is None:
        return UpgradeCheck(authenticated=True, refuse=False)
    ok = auth.check_request(headers, query)
    return UpgradeCheck(authenticated=ok, refuse=not ok and not auth.deferred)
