"""A sans-I/O SIP user agent client: outbound calls, blind transfer and registration
(RFC 3261, RFC 3515).

One :class:`SipClient` per socket, driven like :class:`~voxwire.sip.uas.SipServer`:
:meth:`SipClient.receive` takes a datagram with ``now``, :meth:`SipClient.datagrams`
returns what to send, :meth:`SipClient.events` what happened, and
:meth:`SipClient.get_timer`/:meth:`SipClient.handle_timer` run the timers. The
application starts calls with :meth:`SipClient.invite`, ends them with
:meth:`SipClient.hangup`, transfers them with :meth:`SipClient.refer` and registers with
:meth:`SipClient.register`.

What it does
------------
* **INVITE client transaction** (section 17.1.1): over UDP the INVITE is retransmitted
  on Timer A (T1, doubling) until a response; Timer B (64·T1) without one ends the call
  (:class:`CallFailed` 408). A provisional response stops the retransmissions
  (:class:`CallProgress`). A 2xx is acknowledged by an ACK of its own, sent to the
  Contact of the 2xx through its Record-Route set (section 13.2.2.4), again for each
  retransmitted 2xx; the call is :class:`CallAnswered` with the answer's SDP. A 3xx-6xx
  is acknowledged in the transaction (section 17.1.1.3), retransmissions of it too until
  Timer D (32 s), and the call is :class:`CallFailed` with its status.
* **Digest** (section 22.2, :mod:`voxwire.sip.digest`): a 401 or 407 to an INVITE,
  REGISTER or REFER is answered once per challenge with the request again, CSeq one up,
  carrying ``Authorization`` or ``Proxy-Authorization``; a second challenge for the
  same request that is not ``stale`` fails it (wrong credentials).
* **CANCEL** (section 9.1): :meth:`SipClient.hangup` on a call that had a provisional
  response but no final one sends CANCEL; the 487 is acknowledged and the call is
  :class:`CallFailed` 487. A call without any response yet is abandoned at once
  (:class:`CallFailed` 408 "no response"; its retransmissions stop).
* **BYE** both ways: :meth:`SipClient.hangup` of an answered call sends one (a
  non-INVITE client transaction, Timer E/F, section 17.1.2); a BYE from the peer gets 200
  and :class:`CallEnded`.
* **REFER** (RFC 3515): :meth:`SipClient.refer` sends REFER with ``Refer-To`` and
  ``Referred-By`` in the call's dialog; the 202 and each NOTIFY's ``message/sipfrag``
  status are :class:`TransferProgress` events (each NOTIFY gets 200); a final sipfrag
  status (or a failure of the REFER itself) ends the transfer (``final``). A
  ``Subscription-State: terminated`` NOTIFY without a final status counts as a failure.
* **REGISTER** (section 10): :meth:`SipClient.register` binds a contact for
  ``expires`` seconds; the 200's granted ``expires`` (of the Contact, else the Expires
  header) is refreshed before it runs out (at half the time for short ones, 30 s before
  for long ones), :class:`Registered` each time; a 423 raises ``expires`` to the
  Min-Expires asked; a failure is :class:`RegistrationFailed` and retried after
  ``retry`` seconds. :meth:`SipClient.unregister` sends ``Expires: 0``.

Requests for a dialog voxwire does not know get 481; an in-dialog re-INVITE gets 488
(voxwire does not renegotiate outbound calls); OPTIONS gets 200. Malformed datagrams are
counted in :attr:`SipClient.errors`, never raised.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

from voxwire.errors import SipParseError
from voxwire.sip.digest import DigestClient, parse_challenges
from voxwire.sip.message import (
    DEFAULT_LIMITS,
    Limits,
    NameAddr,
    Request,
    Response,
    parse_message,
    parse_name_addr,
)
from voxwire.sip.sipfrag import sipfrag_status

__all__ = [
    "CallAnswered",
    "CallEnded",
    "CallFailed",
    "CallProgress",
    "ClientEvent",
    "Registered",
    "RegistrationFailed",
    "SipClient",
    "TransferProgress",
]

Address = tuple[str, int]
MAGIC_COOKIE: Final = "z9hG4bK"
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY"
T2: Final = 4.0
TIMER_D: Final = 32.0
_REASONS: Final[dict[int, str]] = {
    200: "OK",
    481: "Call/Transaction Does Not Exist",
    488: "Not Acceptable Here",
    489: "Bad Event",
    501: "Not Implemented",
}


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A provisional response (180 Ringing, 183 Session Progress...)."""

    handle: str
    status: int


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """A 2xx came and was acknowledged: the call is up; ``sdp`` is the answer."""

    handle: str
    response: Response
    sdp: bytes


@dataclass(frozen=True, slots=True)
class CallFailed:
    """The INVITE ended without a call: ``status`` is the final response's (408 when
    Timer B fired, 487 when it was cancelled)."""

    handle: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """An answered call ended: ``remote_bye`` (the peer's BYE) or ``transferred``."""

    handle: str
    reason: Literal["remote_bye", "transferred"]


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Where a REFER is: the 202 (``status`` 202), then each NOTIFY's sipfrag status;
    ``final`` when the transfer is over (``status`` 2xx: it succeeded)."""

    handle: str
    status: int
    final: bool


@dataclass(frozen=True, slots=True)
class Registered:
    """A REGISTER succeeded: the binding lasts ``expires`` seconds (0: unregistered)."""

    aor: str
    expires: int


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    """A REGISTER failed (``status`` 408: no response in time)."""

    aor: str
    status: int


ClientEvent = (
    CallProgress
    | CallAnswered
    | CallFailed
    | CallEnded
    | TransferProgress
    | Registered
    | RegistrationFailed
)


def _token() -> str:
    return secrets.token_hex(8)


def uri_address(uri: str, default_port: int = 5060) -> tuple[str, int] | None:
    """(host, port) of a ``sip:`` URI (the host as written, a name or an IP literal)."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips") or not rest:
        return None
    hostport = rest.split(";")[0].split("?")[0].rpartition("@")[2]
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not host or (port_text and not port_text.isdigit()):
        return None
    port = int(port_text) if port_text else default_port
    return (host, port) if 0 < port < 65536 else None


@dataclass(eq=False)
class _ClientTx:
    branch: str
    method: str
    wire: bytes
    dest: Address
    interval: float
    retransmit_at: float | None
    expires_at: float
    owner: str  # a call handle, or "reg:" + aor
    state: str = "calling"  # calling, proceeding, completed
    ack: bytes | None = None  # the ACK of a non-2xx (INVITE)


@dataclass(eq=False)
class _Call:
    handle: str
    call_id: str
    local: NameAddr
    remote: NameAddr  # the To (its tag once a response carries one)
    target: str  # Request-URI of the INVITE
    dest: Address
    offer: bytes
    cseq: int
    extra: list[tuple[str, str]]
    state: str = "calling"  # calling, early, confirmed, ended
    invite: _ClientTx | None = None
    remote_target: str = ""
    route_set: list[str] = field(default_factory=list)
    ack: bytes | None = None
    cancel_pending: bool = False
    cancelled: bool = False
    challenged: int = 0
    remote_cseq: int = -1
    refer_cseq: int = 0
    refer_target: str = ""
    refer_challenged: int = 0
    transfer_done: bool = False


@dataclass(eq=False)
class _Registration:
    aor: str
    registrar: str
    dest: Address
    contact: str
    expires: int
    call_id: str = field(default_factory=lambda: _token() + "@voxwire")
    tag: str = field(default_factory=_token)
    cseq: int = 0
    refresh_at: float | None = None
    challenged: int = 0
    granted: int = 0
    stopping: bool = False


class SipClient:
    """The UAC of one socket; see the module documentation.

    Parameters
    ----------
    host, port : str, int
        The address peers reach this socket at (Via, Contact, From).
    user, password : str, optional
        Digest credentials (``user`` is also the From user, default ``voxwire``).
    transport : {"UDP", "TCP", "TLS"}
        Over TCP or TLS nothing is retransmitted (section 17.1.1.2), and the Via and the
        Contact (``;transport=tcp`` or ``tls``) name the transport.
    t1 : float
        RFC 3261 T1, seconds.
    retry : float
        Seconds before a failed registration is tried again.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        user: str = "voxwire",
        password: str | None = None,
        transport: str = "UDP",
        t1: float = 0.5,
        retry: float = 30.0,
        limits: Limits = DEFAULT_LIMITS,
        user_agent: str = "voxwire",
    ) -> None:
        if t1 <= 0 or retry <= 0:
            raise ValueError(f"SipClient: t1 and retry must be > 0, got {t1}, {retry}")
        self.host = host
        self.port = port
        self.user = user or "voxwire"
        self.transport = transport.upper()
        if self.transport not in ("UDP", "TCP", "TLS"):
            raise ValueError(f"SipClient: transport must be UDP, TCP or TLS, got {transport!r}")
        self.reliable = self.transport != "UDP"
        self.t1 = t1
        self.retry = retry
        self.limits = limits
        self.user_agent = user_agent
        self._digest = DigestClient(self.user, password) if password is not None else None
        self._calls: dict[str, _Call] = {}
        self._by_call_id: dict[str, str] = {}
        self._tx: dict[str, _ClientTx] = {}
        self._server_cache: dict[tuple[str, str], tuple[bytes, Address, float]] = {}
        self._registrations: dict[str, _Registration] = {}
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[ClientEvent] = []
        #: what was sent and received, by name (``request_sent_INVITE``, ``received_486``...)
        self.counters: Counter[str] = Counter()
        #: malformed datagrams, by :class:`~voxwire.errors.SipParseError` reason
        self.errors: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"SipClient({self.host}:{self.port}, user={self.user!r}, calls={len(self._calls)})"

    # --- the driver's side -----------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> None:
        """Take one datagram (or one framed TCP message) from ``source``."""
        try:
            message = parse_message(data, self.limits)
        except SipParseError as e:
            self.errors[e.reason] += 1
            return
        try:
            if isinstance(message, Response):
                self._response(message, now)
            else:
                self._request(message, source, now)
        except SipParseError as e:  # a header read lazily (To, Contact...) that is malformed
            self.errors[e.reason] += 1

    def datagrams(self) -> list[tuple[bytes, Address]]:
        """What to send, as ``(bytes, (host, port))``, since the last call."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[ClientEvent]:
        """What happened since the last call."""
        out, self._events = self._events, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next, or None."""
        times: list[float] = []
        for tx in self._tx.values():
            times.append(tx.expires_at)
            if tx.retransmit_at is not None:
                times.append(tx.retransmit_at)
        times += [r.refresh_at for r in self._registrations.values() if r.refresh_at is not None]
        times += [t for _, _, t in self._server_cache.values()]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``: retransmissions, timeouts, refreshes."""
        for key, (_, _, until) in list(self._server_cache.items()):
            if until <= now:
                del self._server_cache[key]
        for tx in list(self._tx.values()):
            if tx.expires_at <= now:
                del self._tx[tx.branch]
                if tx.state != "completed":
                    self._timeout(tx, now)
                continue
            if tx.retransmit_at is not None and tx.retransmit_at <= now:
                self._send(tx.wire, tx.dest)
                self.counters[f"retransmitted_{tx.method}"] += 1
                if tx.method == "INVITE":
                    tx.interval *= 2
                elif tx.state == "proceeding":
                    tx.interval = T2
                else:
                    tx.interval = min(tx.interval * 2, T2)
                tx.retransmit_at = now + tx.interval
        for reg in list(self._registrations.values()):
            if reg.refresh_at is not None and reg.refresh_at <= now:
                reg.refresh_at = None
                reg.challenged = 0
                self._send_register(reg, now, None)

    @property
    def calls(self) -> int:
        """Calls not ended yet."""
        return len(self._calls)

    @property
    def transactions(self) -> int:
        """Client transactions alive (tests check none is left behind)."""
        return len(self._tx)

    # --- calls -----------------------------------------------------------------------

    def invite(
        self,
        target: str,
        offer: bytes,
        now: float,
        *,
        dest: Address | None = None,
        display: str = "",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Call ``target`` (a ``sip:`` URI) with the SDP ``offer``; return the call's
        handle. ``dest`` is where the INVITE goes (default: the URI's host, which must
        then be an address the driver can send to)."""
        address = dest or uri_address(target)
        if address is None:
            raise ValueError(f"invite: not a sip: URI with a host: {target!r}")
        handle = _token()
        call = _Call(
            handle=handle,
            call_id=f"{_token()}@{self.host}",
            local=NameAddr(f"sip:{self.user}@{self._hostport()}", display, {"tag": handle}),
            remote=NameAddr(target),
            target=target,
            dest=address,
            offer=offer,
            cseq=secrets.randbelow(2**16) + 1,
            extra=list(extra),
        )
        self._calls[handle] = call
        self._by_call_id[call.call_id] = handle
        self._send_invite(call, now, None)
        return handle

    def hangup(self, handle: str, now: float) -> None:
        """End a call: BYE when answered, CANCEL before (once a provisional came)."""
        call = self._calls.get(handle)
        if call is None:
            return
        if call.state == "confirmed":
            self._bye(call, now)
        elif call.state == "calling":
            # no provisional response at all: nothing to CANCEL yet (section 9.1), and
            # nobody there, it seems; the INVITE is abandoned
            if call.invite is not None:
                self._tx.pop(call.invite.branch, None)
            self._events.append(CallFailed(call.handle, 408, "no response"))
            self._forget(call)
        elif not call.cancelled:
            call.cancel_pending = True
            if call.state == "early":
                self._cancel(call, now)

    def refer(self, handle: str, target: str, now: float) -> None:
        """Ask the peer of an answered call to call ``target`` (a blind transfer)."""
        call = self._calls.get(handle)
        if call is None or call.state != "confirmed":
            raise KeyError(f"refer: no answered call {handle!r}")
        if call.refer_target and not call.transfer_done:
            raise RuntimeError("refer: a transfer of this call is in progress")
        call.refer_target = target
        call.transfer_done = False
        call.refer_challenged = 0
        self._send_refer(call, now, None)

    # --- registration ----------------------------------------------------------------

    def register(
        self,
        registrar: str,
        aor: str,
        now: float,
        *,
        expires: int = 3600,
        dest: Address | None = None,
    ) -> None:
        """Bind this socket's Contact to ``aor`` at ``registrar`` (a ``sip:`` URI, its
        host the registrar's) and keep the binding refreshed."""
        if expires <= 0:
            raise ValueError(f"register: expires must be > 0, got {expires}")
        address = dest or uri_address(registrar)
        if address is None:
            raise ValueError(f"register: not a sip: URI with a host: {registrar!r}")
        contact = f"<sip:{self.user}@{self._hostport()}{self._uri_transport()}>"
        reg = _Registration(aor, registrar, address, contact, expires)
        self._registrations[aor] = reg
        self._send_register(reg, now, None)

    def unregister(self, now: float) -> int:
        """Remove every binding (``Expires: 0``); return how many REGISTERs were sent."""
        count = 0
        for reg in self._registrations.values():
            reg.stopping = True
            reg.refresh_at = None
            reg.challenged = 0
            if reg.granted or reg.cseq:
                self._send_register(reg, now, None)
                count += 1
        return count

    @property
    def registered(self) -> dict[str, int]:
        """The bindings in force: AOR -> seconds granted."""
        return {a: r.granted for a, r in self._registrations.items() if r.granted}

    # --- sending ---------------------------------------------------------------------

    def _hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _uri_transport(self) -> str:
        return "" if self.transport == "UDP" else f";transport={self.transport.lower()}"

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {self._hostport()};branch={branch};rport"

    def _contact(self, target: str = "") -> str:
        # a sips: target wants a sips: Contact (section 8.1.1.8), over TLS only
        if self.transport == "TLS" and target[:5].lower() == "sips:":
            return f"<sips:{self.user}@{self._hostport()}>"
        return f"<sip:{self.user}@{self._hostport()}{self._uri_transport()}>"

    def _send(self, wire: bytes, dest: Address) -> None:
        self._out.append((wire, dest))

    def _start(
        self, method: str, wire: bytes, dest: Address, branch: str, owner: str, now: float
    ) -> _ClientTx:
        tx = _ClientTx(
            branch,
            method,
            wire,
            dest,
            self.t1,
            None if self.reliable else now + self.t1,  # Timer A / Timer E
            now + 64 * self.t1,  # Timer B / Timer F
            owner,
        )
        self._tx[branch] = tx
        self.counters[f"request_sent_{method}"] += 1
        self._send(wire, dest)
        return tx

    def _send_invite(self, call: _Call, now: float, auth: tuple[str, str] | None) -> None:
        branch = MAGIC_COOKIE + _token()
        headers = [
            ("Via", self._via(branch)),
            ("Max-Forwards", "70"),
            ("From", call.local.encode()),
            ("To", NameAddr(call.target).encode()),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.cseq} INVITE"),
            ("Contact", self._contact(call.target)),
            ("Allow", ALLOW),
            ("User-Agent", self.user_agent),
            *call.extra,
        ]
        if auth is not None:
            headers.append(auth)
        headers.append(("Content-Type", "application/sdp"))
        wire = Request("INVITE", call.target, headers, call.offer).encode()
        call.invite = self._start("INVITE", wire, call.dest, branch, call.handle, now)
        call.state = "calling"

    def _in_dialog(self, call: _Call, method: str, cseq: int, branch: str) -> list[tuple[str, str]]:
        headers = [("Via", self._via(branch)), ("Max-Forwards", "70")]
        headers += [("Route", r) for r in call.route_set]
        headers += [
            ("From", call.local.encode()),
            ("To", call.remote.encode()),
            ("Call-ID", call.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        return headers

    def _next_hop(self, call: _Call) -> Address:
        first = parse_name_addr(call.route_set[0]).uri if call.route_set else call.remote_target
        hop = uri_address(first)
        # a host name would need resolving: the address the INVITE went to is kept
        if hop is None or not _is_ip(hop[0]) or self.reliable:
            return call.dest
        return hop

    def _ack_2xx(self, call: _Call) -> None:
        branch = MAGIC_COOKIE + _token()
        headers = self._in_dialog(call, "ACK", call.cseq, branch)
        headers.append(("User-Agent", self.user_agent))
        call.ack = Request("ACK", call.remote_target or call.target, headers).encode()
        self.counters["request_sent_ACK"] += 1
        self._send(call.ack, self._next_hop(call))

    def _ack_non_2xx(self, tx: _ClientTx, response: Response, call: _Call) -> bytes:
        # section 17.1.1.3: same branch, Request-URI, From, Call-ID; the response's To
        headers = [
            ("Via", self._via(tx.branch)),
            ("Max-Forwards", "70"),
            ("From", call.local.encode()),
            ("To", response.header("To") or ""),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.cseq} ACK"),
        ]
        return Request("ACK", call.target, headers).encode()

    def _cancel(self, call: _Call, now: float) -> None:
        tx = call.invite
        if tx is None or tx.state == "completed":
            return
        call.cancel_pending = False
        call.cancelled = True
        headers = [
            ("Via", self._via(tx.branch)),
            ("Max-Forwards", "70"),
            ("From", call.local.encode()),
            ("To", NameAddr(call.target).encode()),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.cseq} CANCEL"),
            ("User-Agent", self.user_agent),
        ]
        wire = Request("CANCEL", call.target, headers).encode()
        # its own transaction: the same branch as the INVITE, told apart by method
        self._start("CANCEL", wire, call.dest, tx.branch + ".cancel", call.handle, now)

    def _bye(self, call: _Call, now: float) -> None:
        branch = MAGIC_COOKIE + _token()
        call.cseq += 1
        headers = self._in_dialog(call, "BYE", call.cseq, branch)
        headers.append(("User-Agent", self.user_agent))
        wire = Request("BYE", call.remote_target, headers).encode()
        self._start("BYE", wire, self._next_hop(call), branch, call.handle, now)
        self._forget(call)

    def _send_refer(self, call: _Call, now: float, auth: tuple[str, str] | None) -> None:
        branch = MAGIC_COOKIE + _token()
        call.cseq += 1
        call.refer_cseq = call.cseq
        headers = self._in_dialog(call, "REFER", call.cseq, branch)
        headers += [
            ("Contact", self._contact(call.target)),
            ("Refer-To", f"<{call.refer_target}>"),
            ("Referred-By", f"<{call.local.uri}>"),
            ("User-Agent", self.user_agent),
        ]
        if auth is not None:
            headers.append(auth)
        wire = Request("REFER", call.remote_target, headers).encode()
        self._start("REFER", wire, self._next_hop(call), branch, call.handle, now)

    def _send_register(self, reg: _Registration, now: float, auth: tuple[str, str] | None) -> None:
        branch = MAGIC_COOKIE + _token()
        reg.cseq += 1
        expires = 0 if reg.stopping else reg.expires
        headers = [
            ("Via", self._via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{reg.aor}>;tag={reg.tag}"),
            ("To", f"<{reg.aor}>"),
            ("Call-ID", reg.call_id),
            ("CSeq", f"{reg.cseq} REGISTER"),
            ("Contact", reg.contact),
            ("Expires", str(expires)),
            ("Allow", ALLOW),
            ("User-Agent", self.user_agent),
        ]
        if auth is not None:
            headers.append(auth)
        wire = Request("REGISTER", reg.registrar, headers).encode()
        self._start("REGISTER", wire, reg.dest, branch, "reg:" + reg.aor, now)

    # --- receiving -------------------------------------------------------------------

    def _response(self, response: Response, now: float) -> None:
        vias = response.vias
        method = response.cseq[1]
        branch = vias[0].branch + (".cancel" if method == "CANCEL" else "")
        tx = self._tx.get(branch)
        status = response.status
        if tx is None or tx.method != method:
            call = self._calls.get(self._by_call_id.get(response.call_id, ""))
            if call is not None and method == "INVITE" and 200 <= status < 300 and call.ack:
                self._send(call.ack, self._next_hop(call))  # a retransmitted 2xx
                self.counters["ack_retransmitted"] += 1
            else:
                self.counters["stray_response"] += 1
            return
        self.counters[f"received_{status}"] += 1
        if tx.method == "INVITE":
            self._invite_response(tx, response, now)
            return
        if status < 200:
            tx.state = "proceeding"
            return
        if tx.state == "completed":
            return
        tx.state = "completed"
        tx.retransmit_at = None
        tx.expires_at = now + (0.0 if self.reliable else 5.0)  # Timer K (T4)
        if tx.owner.startswith("reg:"):
            self._register_response(tx, response, now)
        elif tx.method == "REFER":
            self._refer_response(tx, response, now)

    def _invite_response(self, tx: _ClientTx, response: Response, now: float) -> None:
        status = response.status
        if tx.state == "completed":
            if status >= 300 and tx.ack is not None:
                self._send(tx.ack, tx.dest)  # a retransmitted final response
                self.counters["ack_retransmitted"] += 1
            return
        call = self._calls.get(tx.owner)
        if call is None:
            return
        if status < 200:
            tx.state = "proceeding"
            tx.retransmit_at = None
            if call.state == "calling":
                call.state = "early"
            if status > 100:
                self._events.append(CallProgress(call.handle, status))
            if call.cancel_pending:
                self._cancel(call, now)
            return
        tx.state = "completed"
        tx.retransmit_at = None
        to = response.to
        call.remote = to
        if 200 <= status < 300:
            # the transaction ends; the dialog's ACK is its own (section 13.2.2.4)
            tx.expires_at = now + 64 * self.t1  # 2xx retransmissions matched by Call-ID
            self._tx.pop(tx.branch, None)
            contact = response.header("Contact")
            try:
                call.remote_target = parse_name_addr(contact).uri if contact else call.target
            except SipParseError:
                call.remote_target = call.target
            call.route_set = list(reversed(response.header_values("Record-Route")))
            call.state = "confirmed"
            self._ack_2xx(call)
            if call.cancelled or call.cancel_pending:
                # the 200 crossed the CANCEL: the call is up, so it is ended with a BYE
                self._events.append(CallFailed(call.handle, 487, "cancelled"))
                self._bye(call, now)
                return
            self._events.append(CallAnswered(call.handle, response, response.body))
            return
        tx.ack = self._ack_non_2xx(tx, response, call)
        self._send(tx.ack, tx.dest)
        tx.expires_at = now + (0.0 if self.reliable else TIMER_D)
        if status in (401, 407) and self._digest is not None and not call.cancelled:
            challenges = parse_challenges(
                response.header_values(
                    "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
                )
            )
            stale = any(c.stale for c in challenges)
            if challenges and (call.challenged == 0 or stale) and call.challenged < 3:
                call.challenged += 1
                auth = self._digest.authorize(response.headers, "INVITE", call.target)
                if auth is not None:
                    call.cseq += 1
                    call.remote = NameAddr(call.target)
                    self._send_invite(call, now, auth)
                    return
        self._events.append(CallFailed(call.handle, status, response.reason))
        self._forget(call)

    def _refer_response(self, tx: _ClientTx, response: Response, now: float) -> None:
        call = self._calls.get(tx.owner)
        if call is None:
            return
        status = response.status
        if status in (401, 407) and self._digest is not None and call.refer_challenged == 0:
            auth = self._digest.authorize(response.headers, "REFER", call.remote_target)
            if auth is not None:
                call.refer_challenged += 1
                self._send_refer(call, now, auth)
                return
        final = status >= 300
        if final:
            call.transfer_done = True
        self._events.append(TransferProgress(call.handle, status, final))

    def _register_response(self, tx: _ClientTx, response: Response, now: float) -> None:
        reg = self._registrations.get(tx.owner[4:])
        if reg is None:
            return
        status = response.status
        if status in (401, 407) and self._digest is not None and reg.challenged < 2:
            challenges = parse_challenges(
                response.header_values(
                    "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
                )
            )
            if challenges and (reg.challenged == 0 or any(c.stale for c in challenges)):
                auth = self._digest.authorize(response.headers, "REGISTER", reg.registrar)
                if auth is not None:
                    reg.challenged += 1
                    self._send_register(reg, now, auth)
                    return
        if status == 423 and not reg.stopping:
            minimum = (response.header("Min-Expires") or "").strip()
            if minimum.isdigit() and len(minimum) < 10 and int(minimum) > reg.expires:
                reg.expires = int(minimum)
                self._send_register(reg, now, None)
                return
        reg.challenged = 0
        if reg.stopping:
            self._registrations.pop(reg.aor, None)
            if 200 <= status < 300:
                self._events.append(Registered(reg.aor, 0))
            else:
                self._events.append(RegistrationFailed(reg.aor, status))
            return
        if not 200 <= status < 300:
            reg.granted = 0
            reg.refresh_at = now + self.retry
            self._events.append(RegistrationFailed(reg.aor, status))
            return
        granted = self._granted(response, reg)
        reg.granted = granted
        # refresh before the binding runs out: half way for short ones, 30 s early else
        reg.refresh_at = now + max(1.0, granted - min(30.0, granted / 2))
        self._events.append(Registered(reg.aor, granted))

    def _granted(self, response: Response, reg: _Registration) -> int:
        ours = parse_name_addr(reg.contact).uri
        for value in response.header_values("Contact"):
            try:
                contact = parse_name_addr(value)
            except SipParseError:
                continue
            text = contact.params.get("expires", "")
            if contact.uri == ours and text.isdigit() and len(text) < 10:
                return int(text)
        text = (response.header("Expires") or "").strip()
        return int(text) if text.isdigit() and len(text) < 10 else reg.expires

    def transport_error(self, dest: Address, now: float) -> None:
        """The connection to ``dest`` could not be made or broke: each transaction to
        it that has no final response fails as if it had got a 503 (section 8.1.3.1)."""
        for tx in list(self._tx.values()):
            if tx.dest == dest and tx.state != "completed":
                del self._tx[tx.branch]
                self.counters[f"transport_error_{tx.method}"] += 1
                self._timeout(tx, now, status=503, reason="transport error")

    def _timeout(
        self, tx: _ClientTx, now: float, *, status: int = 408, reason: str = "no response"
    ) -> None:
        if status == 408:
            self.counters[f"timeout_{tx.method}"] += 1
        if tx.owner.startswith("reg:"):
            reg = self._registrations.get(tx.owner[4:])
            if reg is None:
                return
            if reg.stopping:
                self._registrations.pop(reg.aor, None)
                self._events.append(RegistrationFailed(reg.aor, status))
                return
            reg.granted = 0
            reg.refresh_at = now + self.retry
            self._events.append(RegistrationFailed(reg.aor, status))
            return
        call = self._calls.get(tx.owner)
        if call is None:
            return
        if tx.method == "INVITE":
            self._events.append(CallFailed(call.handle, status, reason))
            self._forget(call)
        elif tx.method == "REFER":
            call.transfer_done = True
            self._events.append(TransferProgress(call.handle, status, True))

    def _forget(self, call: _Call) -> None:
        call.state = "ended"
        self._calls.pop(call.handle, None)
        self._by_call_id.pop(call.call_id, None)

    def _request(self, request: Request, source: Address, now: float) -> None:
        via = request.vias[0]
        key = (via.branch, request.method)
        cached = self._server_cache.get(key)
        if cached is not None and via.branch:
            self._send(cached[0], cached[1])  # a retransmitted request: the same answer
            return
        if request.method == "ACK":
            return
        self.counters[f"request_received_{request.method}"] += 1
        call = self._calls.get(self._by_call_id.get(request.call_id, ""))
        in_dialog = call is not None and request.to.tag == call.local.tag
        dest = self._response_address(request, source)
        if request.method == "OPTIONS":
            self._reply(request, 200, dest, now, [("Allow", ALLOW)])
            return
        if call is None or not in_dialog or call.state != "confirmed":
            self._reply(request, 481, dest, now)
            return
        cseq = request.cseq[0]
        if cseq <= call.remote_cseq and request.method != "ACK":
            self._reply(request, 481, dest, now)
            return
        call.remote_cseq = cseq
        if request.method == "BYE":
            self._reply(request, 200, dest, now)
            self._forget(call)
            self._events.append(CallEnded(call.handle, "remote_bye"))
        elif request.method == "NOTIFY":
            self._notify(call, request, dest, now)
        elif request.method == "INVITE":
            self._reply(request, 488, dest, now)
        else:
            self._reply(request, 501, dest, now, [("Allow", ALLOW)])

    def _notify(self, call: _Call, request: Request, dest: Address, now: float) -> None:
        event = (request.header("Event") or "").split(";")[0].strip().lower()
        if event != "refer" or not call.refer_target:
            self._reply(request, 489, dest, now)
            return
        self._reply(request, 200, dest, now)
        status = sipfrag_status(request.body)
        terminated = (
            (request.header("Subscription-State") or "").strip().lower().startswith("terminated")
        )
        if call.transfer_done:
            return
        if status is None:
            if terminated:
                call.transfer_done = True
                self._events.append(TransferProgress(call.handle, 500, True))
            return
        final = status >= 200 or terminated
        if final:
            call.transfer_done = True
        self._events.append(TransferProgress(call.handle, status, final))
        if final and 200 <= status < 300:
            # the transferee reached the target: this leg is done (RFC 5589 section 6)
            self._bye(call, now)
            self._events.append(CallEnded(call.handle, "transferred"))

    def _response_address(self, request: Request, source: Address) -> Address:
        via = request.vias[0]
        if self.reliable or "rport" in via.params:
            return source
        return (via.params.get("received") or source[0], via.port or 5060)

    def _reply(
        self,
        request: Request,
        status: int,
        dest: Address,
        now: float,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = [("Via", v) for v in request.header_values("Via")]
        to = request.header("To") or ""
        if not request.to.tag:
            to += f";tag={_token()}"
        headers += [
            ("From", request.header("From") or ""),
            ("To", to),
            ("Call-ID", request.call_id),
            ("CSeq", request.header("CSeq") or ""),
            ("User-Agent", self.user_agent),
            *(extra or []),
        ]
        wire = Response(status, _REASONS.get(status, "Unknown"), headers).encode()
        self.counters[f"response_{status}"] += 1
        self._server_cache[(request.vias[0].branch, request.method)] = (
            wire,
            dest,
            now + 64 * self.t1,
        )
        self._send(wire, dest)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
