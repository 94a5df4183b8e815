"""Registering a SIP server's address at a PBX or trunk (RFC 3261 section 10), so that
calls to an extension reach :func:`voxwire.aio.sip.serve_sip`.

>>> async def main():                                                  # doctest: +SKIP
...     server = await serve_sip(echo_handler, "192.0.2.1", 5060)
...     registration = await register_server(server, "sip:200@pbx.example", password="...")
...     ...                                    # the PBX sends calls for 200 to voxwire
...     await registration.aclose()            # unregisters (Expires: 0)
...     await server.aclose()

The REGISTERs go from the server's own UDP socket, so the Contact the PBX keeps is the
address INVITEs are answered on; the registrar's responses are taken off that socket
before the server sees them. The binding is refreshed before it runs out (see
:mod:`voxwire.sip.uac`), challenges (401/407) are answered with the digest credentials,
and a failed registration is tried again after ``retry`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import TracebackType

from voxwire.aio.sip import SipCallServer
from voxwire.errors import SipParseError
from voxwire.sip.message import Response, parse_message
from voxwire.sip.uac import Registered, RegistrationFailed, SipClient, uri_address

__all__ = ["ServerRegistration", "register_server"]

log = logging.getLogger("voxwire.aio")


class ServerRegistration:
    """The registration of one AOR for a :class:`SipCallServer`; made by
    :func:`register_server`."""

    def __init__(self, server: SipCallServer, client: SipClient) -> None:
        self.server = server
        self.client = client
        #: every outcome, in order
        self.events: list[Registered | RegistrationFailed] = []
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def registered(self) -> bool:
        """Whether a binding is in force."""
        return bool(self.client.registered)

    def claims(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Take ``data`` when it is a response to a REGISTER (the server's socket calls
        this first); False for anything else."""
        if not data.startswith(b"SIP/2.0 ") or b"REGISTER" not in data[:4096]:
            return False
        try:
            message = parse_message(data, self.client.limits)
        except SipParseError:
            return False  # the server counts it
        if not isinstance(message, Response) or message.cseq[1] != "REGISTER":
            return False
        self.client.receive(data, addr, self._now())
        self._pump()
        return True

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _pump(self) -> None:
        transport = self.server._transport
        for wire, dest in self.client.datagrams():
            if transport is not None and not transport.is_closing():
                transport.sendto(wire, dest)
        for event in self.client.events():
            if isinstance(event, Registered | RegistrationFailed):
                self.events.append(event)
                if isinstance(event, Registered):
                    log.info("sip: registered %s for %d s", event.aor, event.expires)
                else:
                    log.warning("sip: registration of %s failed (%d)", event.aor, event.status)
                self._changed.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.client.get_timer()
        if when is not None and not self._closed:
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.client.handle_timer(self._now())
        self._pump()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the next outcome; True when registered."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        return self.registered

    async def aclose(self, *, timeout: float = 2.0) -> None:
        """Unregister (``Expires: 0``), waiting up to ``timeout`` seconds for the answer."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        if self.client.unregister(self._now()):
            self._pump()
            deadline = loop.time() + timeout
            while self.client._registrations and loop.time() < deadline:
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
                except TimeoutError:
                    break
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.server.registration is self:
            self.server.registration = None

    async def __aenter__(self) -> ServerRegistration:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def register_server(
    server: SipCallServer,
    aor: str,
    *,
    registrar: str | None = None,
    user: str | None = None,
    password: str | None = None,
    expires: int = 3600,
    retry: float = 30.0,
    timeout: float = 5.0,
) -> ServerRegistration:
    """Register ``server``'s address for ``aor`` (``sip:ext@pbx[:port]``) at
    ``registrar`` (default the AOR's host) and keep it registered; waits up to
    ``timeout`` seconds for the first outcome (see :attr:`ServerRegistration.registered`;
    a failure is retried either way). ``user`` is the Contact and digest user (default
    the AOR's user)."""
    target = registrar or "sip:" + aor.partition("@")[2]
    hostport = uri_address(target)
    if hostport is None or uri_address(aor) is None:
        raise ValueError(f"register_server: not sip: URIs with a host: {aor!r}, {target!r}")
    host, port = hostport
    infos = await asyncio.get_running_loop().getaddrinfo(
        host.strip("[]"), port, family=socket.AF_INET, type=socket.SOCK_DGRAM
    )
    dest = (str(infos[0][4][0]), port)
    name = user or aor.partition(":")[2].partition("@")[0] or "voxwire"
    sip = server.sip
    client = SipClient(sip.host, sip.port, user=name, password=password, t1=sip.t1, retry=retry)
    registration = ServerRegistration(server, client)
    server.registration = registration
    client.register(target, aor, registration._now(), expires=expires, dest=dest)
    registration._pump()
    await registration.wait(timeout)
    return registration
