"""What every WebSocket adapter decides before the upgrade: the token, the subprotocol.

The adapters (:mod:`voxwire.aio.websockets_server`, :mod:`voxwire.aio.asgi`,
:mod:`voxwire.aio.aiohttp_adapter`) each read the upgrade request in their framework's
way and hand the parts to these functions, so the decisions are made in one place:

* :func:`check_upgrade`: whether the request carries a valid
  :class:`~voxwire.security.TokenAuth` token, and whether the upgrade must be refused
  (HTTP 401): because it presents a token that is not valid, or because it presents none
  and cannot carry one later (``TokenAuth.deferred`` is false: no token in the start
  message either);
* :func:`~voxwire.protocols.registry.select_subprotocol`: the WebSocket subprotocol to
  accept from those the client offered (jambonz asks for ``audio.jambonz.org``);
* :class:`ConnectionCaps`: whether one more connection, in total and from the client's
  address, is admitted (the adapters answer HTTP 503 when it is not).

>>> from voxwire.security import TokenAuth, TokenClaims
>>> check_upgrade(TokenAuth("k"), {}, {"token": "nope"})
UpgradeCheck(authenticated=False, refuse=True, reason='wrong token', claims=None)
>>> check_upgrade(TokenAuth("k", custom_parameter=None), {}, {})
UpgradeCheck(authenticated=False, refuse=True, reason='missing token', claims=None)
>>> check_upgrade(TokenAuth("k"), {}, {})
UpgradeCheck(authenticated=False, refuse=False, reason='', claims=None)
>>> check_upgrade(None, {}, {})
UpgradeCheck(authenticated=True, refuse=False, reason='', claims=None)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from voxwire.audit import audit
from voxwire.protocols.registry import SUBPROTOCOLS, select_subprotocol
from voxwire.security import TokenAuth, TokenClaims

__all__ = [
    "SUBPROTOCOLS",
    "ConnectionCaps",
    "UpgradeCheck",
    "check_upgrade",
    "refused",
    "select_subprotocol",
]

log = logging.getLogger("voxwire.aio")


@dataclass(frozen=True, slots=True)
class UpgradeCheck:
    """The token check of one upgrade request.

    ``authenticated`` is true when the request carried the token, or when no token is
    asked for; a call that is not authenticated yet must show the token in its start
    message (within ``Limits.auth_timeout``). ``refuse`` is true when the adapter must
    answer the request with an error instead of upgrading (HTTP 401, or a close before
    ``websocket.accept`` in ASGI servers without the HTTP response extension); ``reason``
    says why (it never contains the token). ``claims`` are a signed token's.
    """

    authenticated: bool
    refuse: bool
    reason: str = ""
    claims: TokenClaims | None = None


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
    credential = auth.check_credential(headers, query)
    if credential.ok:
        return UpgradeCheck(authenticated=True, refuse=False, claims=credential.claims)
    if credential.presented or not auth.deferred:
        return UpgradeCheck(authenticated=False, refuse=True, reason=credential.reason)
    return UpgradeCheck(authenticated=False, refuse=False)


class ConnectionCaps:
    """Caps on a server's open media connections: in total, and per client address.

    An adapter calls :meth:`admit` with the client's address before upgrading a request;
    a non-empty answer is the reason to refuse it (HTTP 503, counted in
    :data:`voxwire.aio.session.VIOLATIONS` as ``connections`` or ``per_address``). An
    admitted connection must be released with :meth:`release` once, when it closes.

    ``max_per_address`` is off by default: a provider's media gateway carries many calls
    from one address, and behind a reverse proxy every client has the proxy's address.
    Set it for servers that browsers or other end clients reach directly.

    >>> caps = ConnectionCaps(max_total=2, max_per_address=1)
    >>> caps.admit("10.0.0.1"), caps.admit("10.0.0.1")
    ('', 'per_address')
    >>> caps.admit("10.0.0.2"), caps.admit("10.0.0.3")
    ('', 'connections')
    >>> caps.release("10.0.0.1"); caps.open
    1
    """

    def __init__(self, max_total: int | None = 1000, max_per_address: int | None = None) -> None:
        for name, value in (("max_total", max_total), ("max_per_address", max_per_address)):
            if value is not None and value < 1:
                raise ValueError(f"ConnectionCaps.{name} must be >= 1 or None, got {value!r}")
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._per_address: dict[str, int] = {}
        self.open = 0

    def admit(self, address: str) -> str:
        """Count one more connection from ``address``; ``""`` when admitted, else the
        kind of cap it would exceed (``"connections"`` or ``"per_address"``)."""
        if self.max_total is not None and self.open >= self.max_total:
            return "connections"
        held = self._per_address.get(address, 0)
        if self.max_per_address is not None and held >= self.max_per_address:
            return "per_address"
        self._per_address[address] = held + 1
        self.open += 1
        return ""

    def release(self, address: str) -> None:
        """Forget one admitted connection from ``address``."""
        held = self._per_address.get(address, 0)
        if held <= 0:
            raise ValueError(f"no admitted connection from {address!r} to release")
        if held == 1:
            del self._per_address[address]
        else:
            self._per_address[address] = held - 1
        self.open -= 1

    def refusal(self, kind: str) -> str:
        """The reason of the 503 answer for a refusal of ``kind``."""
        if kind == "per_address":
            return f"too many connections from this address (max {self.max_per_address})"
        return f"too many connections (max {self.max_total})"


def refused(kind: str, status: int, address: str, reason: str) -> str:
    """Log, count (:data:`~voxwire.aio.session.VIOLATIONS`) and audit one request refused
    before the upgrade; return the body of the HTTP answer."""
    from voxwire.aio.session import VIOLATIONS

    VIOLATIONS.note(kind)
    log.warning("refused a connection from %s: %d %s", address, status, reason)
    audit("connection_refused", status=status, kind=kind, reason=reason, remote=address)
    return reason + "\n"
