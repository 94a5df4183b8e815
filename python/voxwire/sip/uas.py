"""A sans-I/O SIP user agent server: transactions, dialogs and timers (RFC 3261).

One :class:`SipServer` per listening socket. It never touches a socket or a clock:

* :meth:`SipServer.receive` takes one datagram, where it came from and ``now``;
* :meth:`SipServer.datagrams` returns what to send, as ``(bytes, (host, port))``;
* :meth:`SipServer.events` returns what the application must know: an
  :class:`IncomingCall` (a new INVITE whose offer voxwire can answer), a
  :class:`CallCancelled`, a :class:`CallConfirmed` (the ACK of the 200) and a
  :class:`CallEnded`;
* :meth:`SipServer.get_timer` / :meth:`SipServer.handle_timer` run the timers;
* the application answers with :meth:`SipServer.ring`, :meth:`SipServer.answer`,
  :meth:`SipServer.reject` and ends a call with :meth:`SipServer.hangup`.

>>> from voxwire.sip.uas import SipServer
>>> server = SipServer("192.0.2.1", 5060)
>>> server.receive(
...     b"OPTIONS sip:bot@192.0.2.1 SIP/2.0\\r\\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx1\\r\\n"
...     b"To: <sip:bot@192.0.2.1>\\r\\nFrom: <sip:lb@192.0.2.9>;tag=a\\r\\nCall-ID: c1\\r\\n"
...     b"CSeq: 1 OPTIONS\\r\\n\\r\\n", ("192.0.2.9", 5060), now=0.0)
>>> [(wire.split(b"\\r\\n")[0], dest) for wire, dest in server.datagrams()]
[(b'SIP/2.0 200 OK', ('192.0.2.9', 5060))]

What it does
------------
* **INVITE server transaction** (section 17.2.1): 100 Trying at once; retransmitted
  INVITEs are answered with the last provisional response, or the final one, and
  otherwise absorbed. A non-2xx final response is retransmitted on Timer G (T1 doubling up
  to T2) until the ACK, for at most Timer H (64·T1); after the ACK, Timer I (T4) absorbs
  ACK retransmissions. A 2xx is retransmitted by the UAS core (section 13.3.1.4) on the
  same schedule until the ACK comes, in its own transaction, matched to the dialog; when
  64·T1 pass without one, the call is ended with a BYE and :class:`CallEnded`
  ``no_ack``. INVITE retransmissions after the 2xx are absorbed (RFC 6026 section 7.1,
  Timer L = 64·T1).
* **Non-INVITE server transactions** (section 17.2.2): a retransmitted request gets the
  same response again until Timer J (64·T1).
* **CANCEL** (section 9.2): 481 when no INVITE transaction matches; otherwise 200, and
  487 to the INVITE when it had no final response yet (:class:`CallCancelled`).
* **Dialogs** (section 12): local tag, remote tag, Call-ID, both CSeq spaces, the remote
  target (Contact) and route set (Record-Route). A request inside an unknown dialog gets
  481 (section 12.2.2), one with a lower CSeq 500. BYE ends a call from either side; the
  server's BYE runs in a non-INVITE client transaction (section 17.1.2) retransmitted on
  Timer E (T1 doubling to T2; T2 once a provisional came) until a final response or
  Timer F (64·T1).
* **OPTIONS** (section 11): 200 with Allow, Accept and Supported; 503 with Retry-After
  while :attr:`SipServer.draining` (a balancer's health probe takes the server out). New
  INVITEs while draining, or past ``max_calls``, get 503 too.
* **Authentication** (section 22, with ``auth``, :mod:`voxwire.sip.auth`): a new INVITE
  from outside the allow-list gets 401 (407 as a proxy would, ``Authenticator(proxy=True)``)
  with a digest challenge (SHA-256 and MD5) until it
  carries valid credentials, or 403 when there are none to check; the challenge's
  transaction is an ordinary non-2xx one (Timer G until its ACK).
* **re-INVITE and UPDATE** (section 14, RFC 3311) inside a confirmed dialog: a new offer
  of the call's codec (same payload type) is answered at once, the direction mirrored
  (hold: ``sendonly`` is answered ``recvonly``, ``inactive`` ``inactive``; ``c=0.0.0.0``
  as RFC 3264 section 8.4 describes), the o= version raised when the answer changed, and
  :class:`CallUpdated` says what the stream is now. The 2xx of a re-INVITE is
  retransmitted until its ACK like the first one's. A re-INVITE without an offer gets the
  session as it is offered in the 200, and the ACK's answer applies. An offer without the
  codec gets 488 and the session stays as it was (section 14.2). A re-INVITE while the
  dialog's last INVITE is open (no final response yet, or its 2xx not acknowledged) gets
  500 with a random Retry-After of 0-10 s (section 14.2), an UPDATE before the INVITE's
  offer was answered too (RFC 3311 section 5.2); an UPDATE outside a dialog 481. An
  UPDATE without a body gets 200 (a session refresh). While voxwire's own offer is
  outstanding (the 2xx of a re-INVITE without an offer, until the ACK brings the
  answer), a re-INVITE or an UPDATE with a new offer gets 491 Request Pending (RFC 3264
  section 4, RFC 3311 section 5.2; the caller retries after a random wait, section
  14.1) and the session stays as it was; the ACK's answer still applies.
* **Session timers** (RFC 4028 section 9): a request with ``Session-Expires`` from a
  caller that supports ``timer`` gets 422 with ``Min-SE`` below ``min_se``; otherwise the
  interval is granted with the refresher the request names (the caller when it names
  none) and each refresh (re-INVITE or UPDATE) starts it again; without one the server
  sends BYE ``min(32, N/3)`` seconds before the session expires (section 10,
  :class:`CallEnded` ``session_expired``). When voxwire is the refresher (the request
  said ``refresher=uas``, or a proxy put ``Session-Expires`` into the request of a caller
  without ``timer``) it refreshes at half the interval: UPDATE without a body when the
  caller allows UPDATE, else a re-INVITE offering the session as it is (section 7.4); a
  408, a 481 or no answer ends the call with a BYE (``session_refresh_failed``).
* **Blind transfer** (RFC 3515): :meth:`SipServer.refer` sends REFER in a confirmed
  dialog; its response and the NOTIFYs of that dialog (each answered 200, their sipfrag
  status read) are :class:`CallTransfer` events.
* REGISTER, SUBSCRIBE, NOTIFY (outside a transfer), REFER, INFO, PRACK, MESSAGE and
  PUBLISH get 405 with Allow;
  any other method 501; a Require naming an extension but ``timer`` gets 420 (section
  8.2.2.3); a
  Request-URI that is not ``sip:``/``sips:`` 416, and so does a ``sips:`` one that did not
  come over TLS (the caller asked for TLS on every hop, section 26.2.2); an INVITE body
  other than
  ``application/sdp`` 415; an INVITE without an offer (the offer in the ACK) or whose offer
  has nothing voxwire can take 488; an SDP that does not parse 400.
* Responses go where section 18.2.2 and RFC 3581 say: to the Via's ``received`` address,
  to the source port when the Via has ``rport``, else to the sent-by port; over TCP or TLS
  (``transport="TCP"``, ``"TLS"``) to the connection the request came on.
* Over TLS (section 26, ``transport="TLS"``; the driver does the handshake) the server's
  Via says ``SIP/2.0/TLS`` and its Contact is ``sips:`` when the INVITE's Request-URI was
  (section 12.1.1), else ``sip:...;transport=tls``.

Malformed datagrams raise nothing: they are dropped and counted in :attr:`SipServer.errors`
by :class:`~voxwire.errors.SipParseError` reason. Transactions are bounded
(``max_transactions``); a request that would need one more is dropped and counted.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Final, Literal, NamedTuple

from voxwire.errors import SdpError, SipParseError
from voxwire.protocols.rtp_session import Codec
from voxwire.sip.auth import Authenticator
from voxwire.sip.message import (
    DEFAULT_LIMITS,
    Limits,
    NameAddr,
    Request,
    Response,
    Via,
    parse_message,
    parse_name_addr,
)
from voxwire.sip.sdp import Answer, answer_offer, parse_sdp
from voxwire.sip.sipfrag import sipfrag_status

__all__ = [
    "CallCancelled",
    "CallConfirmed",
    "CallEnded",
    "CallTransfer",
    "CallUpdated",
    "EndReason",
    "IncomingCall",
    "SipEvent",
    "SipServer",
]

Address = tuple[str, int]

MAGIC_COOKIE: Final = "z9hG4bK"
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"
_KNOWN_UNSUPPORTED: Final = frozenset(
    {"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "INFO", "PRACK", "MESSAGE", "PUBLISH"}
)
_NOWHERE: Final = frozenset({"0.0.0.0", "::"})
_REASONS: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    603: "Decline",
}

EndReason = Literal["remote_bye", "no_ack", "session_expired", "session_refresh_failed"]
"""Why the server ended a call by itself: the peer's BYE, no ACK for the 200, no session
refresh in time, or voxwire's own refresh answered 408/481 or never answered (RFC 4028
section 10: the server sent a BYE)."""
SUPPORTED: Final = "timer"
"""The extensions voxwire takes (RFC 4028 session timers)."""


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE with an offer that can be answered; answer with :meth:`SipServer.answer`
    (after :meth:`SipServer.ring`, if it rings) or :meth:`SipServer.reject`."""

    handle: str
    """The call's handle in the server's methods (the dialog's local tag)."""
    call_id: str
    answer: Answer
    """The negotiated stream (codec, payload types, ptime, where to send)."""
    request: Request
    source: Address
    user: str = ""
    """The user the INVITE authenticated as (digest), or "" (no authentication, or a
    source of the allow-list)."""


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller cancelled before the call was answered (487 was sent)."""

    handle: str


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK of the 200 came: the dialog is confirmed."""

    handle: str


@dataclass(frozen=True, slots=True)
class CallUpdated:
    """A re-INVITE or an UPDATE changed the session (section 14, RFC 3311): ``answer`` is
    the stream as it is now. Its ``direction`` is voxwire's: ``recvonly`` or ``inactive``
    while the caller holds the call (send nothing), ``sendonly`` or ``inactive`` while
    the caller sends nothing (expect no RTP), ``sendrecv`` when it resumed. ``sending``
    is False when the offer named no address to send to (``c=0.0.0.0``, RFC 3264 section
    8.4: the old way to hold)."""

    handle: str
    answer: Answer
    method: str

    @property
    def sending(self) -> bool:
        """Whether media may be sent now."""
        return self.answer.direction in ("sendrecv", "sendonly")

    @property
    def receiving(self) -> bool:
        """Whether the peer sends media now."""
        return self.answer.direction in ("sendrecv", "recvonly")


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call ended without the application asking (a BYE came, or the 200 was never
    acknowledged and the server sent a BYE)."""

    handle: str
    reason: EndReason


@dataclass(frozen=True, slots=True)
class CallTransfer:
    """Where a blind transfer (:meth:`SipServer.refer`, RFC 3515) is: the REFER's response
    (202), then each NOTIFY's sipfrag status; ``final`` when it is over (2xx: the caller
    reached the target)."""

    handle: str
    status: int
    final: bool


SipEvent = IncomingCall | CallCancelled | CallConfirmed | CallUpdated | CallEnded | CallTransfer


def _token() -> str:
    return secrets.token_hex(8)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _uri_address(uri: str) -> Address | None:
    """host:port of a sip: URI whose host is an IP literal, else None."""
    _, _, rest = uri.partition(":")
    rest = rest.split(";")[0].split("?")[0]
    hostport = rest.rpartition("@")[2]
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not _is_ip(host) or (port_text and not port_text.isdigit()):
        return None
    port = int(port_text) if port_text else 5060
    return (host, port) if 0 < port < 65536 else None


@dataclass(eq=False)
class _ServerTx:
    request: Request
    source: Address
    dest: Address
    via: Via
    invite: bool
    state: str = "trying"  # trying/proceeding, completed, confirmed, accepted
    last: bytes | None = None  # last response sent
    final: int | None = None
    interval: float = 0.0
    retransmit_at: float | None = None
    expires_at: float | None = None
    dialog: _Dialog | None = None

    def deadline(self) -> float | None:
        times = [t for t in (self.retransmit_at, self.expires_at) if t is not None]
        return min(times) if times else None


@dataclass(eq=False)
class _ClientTx:
    request: bytes
    dest: Address
    started: float
    interval: float
    retransmit_at: float | None
    expires_at: float
    state: str = "trying"  # trying, proceeding, completed
    method: str = "BYE"
    ack: bytes = b""  # a refresh INVITE's ACK, sent again for a retransmitted final


@dataclass(eq=False)
class _Dialog:
    handle: str
    call_id: str
    remote_tag: str
    local: NameAddr  # our address (To of the INVITE, with our tag)
    remote: NameAddr  # the caller (From of the INVITE)
    remote_target: str
    route_set: list[str]
    source: Address
    invite: _ServerTx
    invite_cseq: int
    remote_cseq: int
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2**31 - 1) + 1)
    state: str = "early"  # early, answered (2xx sent, no ACK), confirmed, ended
    ok: bytes | None = None
    ok_interval: float = 0.0
    ok_at: float | None = None
    ok_give_up: float = 0.0
    confirmed_once: bool = False
    # the session (RFC 3264 section 8): the stream as negotiated last, where voxwire
    # receives it, the o= line's id and version, the last SDP sent
    answer: Answer | None = None
    media: Address = ("", 0)
    sdp_id: int = 0
    sdp_version: int = 0
    sdp: bytes = b""
    offer_in_ok: bool = False  # a re-INVITE without an offer: its answer is in the ACK
    # RFC 4028: the negotiated interval (0: no session timer), when to send the BYE, and
    # when voxwire is the refresher, when its next refresh goes and the one in flight
    session_expires: int = 0
    expire_at: float | None = None
    we_refresh: bool = False
    refresh_at: float | None = None
    refreshing: str = ""  # the branch of voxwire's refresh in flight
    refresh_method: str = ""
    timer_supported: bool = False  # the caller said Supported: timer
    update_allowed: bool = False  # the caller's Allow names UPDATE
    min_se: int = 0

    def deadline(self) -> float | None:
        times = [t for t in (self.ok_at, self.expire_at, self.refresh_at) if t is not None]
        return min(times) if times else None


class _Grant(NamedTuple):
    interval: int  # seconds, 0: no session timer
    we_refresh: bool
    supported: bool  # the caller said Supported: timer
    update_allowed: bool  # its Allow names UPDATE
    min_se: int


def _session_expires(value: str) -> tuple[int, str] | None:
    """``Session-Expires: N;refresher=...`` as (N, refresher or ""); None when malformed."""
    text, _, params = value.partition(";")
    text = text.strip()
    if not text.isdigit() or len(text) > 10:
        return None
    refresher = ""
    for param in params.split(";"):
        name, _, v = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = v.strip().lower()
    return int(text), refresher


def _side(we_refresh: bool) -> str:
    return "uas" if we_refresh else "uac"


class SipServer:
    """The UAS of one SIP listening address; see the module documentation.

    Parameters
    ----------
    host, port : str, int
        The address the socket is bound to and that goes into Contact and Via (the address
        peers reach: not ``0.0.0.0``).
    codecs : tuple of {"pcmu", "pcma", "opus"}
        What an offer may be answered with, in no order (the offer's order wins).
    max_calls : int
        Dialogs at once (early or established); further INVITEs get 503.
    max_transactions : int
        Server and client transactions at once; requests past it are dropped (counted).
    limits : Limits
        The parser's bounds.
    t1, t2, t4 : float
        RFC 3261 timer values in seconds (section 17.1.1.1: 0.5, 4 and 5).
    user_agent : str
        Value of the Server and User-Agent headers.
    transport : {"UDP", "TCP", "TLS"}
        The transport of the socket this server reads. Over TCP or TLS (reliable, section 18)
        responses go back to the connection the request came on (the source address),
        the server's BYE goes on the dialog's connection, and the retransmission timers
        of unreliable transports (G, E) do not run; Timers I, J and K are zero. The 200
        of an INVITE is still retransmitted until the ACK (section 13.3.1.4).
    retry_after : int
        Seconds in the Retry-After of a 503.
    min_se, session_expires : int
        RFC 4028 session timers: the smallest session interval taken (a request that
        asks for less gets 422 with this Min-SE; RFC 4028 says 90 s at least, tests use
        less) and the largest one granted, seconds.
    srtp : {"tls", "always", "never"}
        When ``RTP/SAVP`` offers (SDES-SRTP, RFC 4568, :mod:`voxwire.sip.sdp`) are taken:
        on a TLS server only (the default: the keys are in the SDP), on any transport
        (``always``, insecure), or never. An offer whose only audio stream is SRTP where
        it is not taken gets 488; a re-offer must keep the call's keys (else 488).
    auth : Authenticator, optional
        Who may call (:mod:`voxwire.sip.auth`): each new INVITE from outside its
        allow-list is challenged (401, or 407 as a proxy; digest) until it carries valid
        credentials, or refused (403) when there are none to check. OPTIONS, CANCEL, ACK
        and requests inside a dialog are not challenged. None: anyone may call.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        codecs: tuple[Codec, ...] = ("pcmu", "pcma"),
        max_calls: int = 100,
        max_transactions: int = 4096,
        limits: Limits = DEFAULT_LIMITS,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        user_agent: str = "voxwire",
        retry_after: int = 5,
        transport: Literal["UDP", "TCP", "TLS"] = "UDP",
        auth: Authenticator | None = None,
        min_se: int = 90,
        session_expires: int = 1800,
        srtp: Literal["tls", "always", "never"] = "tls",
    ) -> None:
        if not (0 < t1 <= t2) or t4 <= 0 or max_calls < 1 or max_transactions < 1:
            raise ValueError(
                "SipServer: need 0 < t1 <= t2, t4 > 0 and positive bounds, got "
                f"t1={t1}, t2={t2}, t4={t4}, max_calls={max_calls}, "
                f"max_transactions={max_transactions}"
            )
        self.host = host
        self.port = port
        self.codecs = codecs
        self.max_calls = max_calls
        self.max_transactions = max_transactions
        self.limits = limits
        self.t1, self.t2, self.t4 = t1, t2, t4
        if transport not in ("UDP", "TCP", "TLS"):
            raise ValueError(
                f"SipServer: transport must be 'UDP', 'TCP' or 'TLS', got {transport!r}"
            )
        self.transport = transport
        if srtp not in ("tls", "always", "never"):
            raise ValueError(f"SipServer: srtp must be 'tls', 'always' or 'never', got {srtp!r}")
        #: whether RTP/SAVP offers (SDES-SRTP, RFC 4568) are taken: over TLS by default
        #: (the keys cross the signalling path), on any transport with ``srtp="always"``
        #: (insecure: the keys are readable on the wire), never with ``"never"``
        self.srtp = srtp == "always" or (srtp == "tls" and transport == "TLS")
        self.reliable = transport != "UDP"
        self.user_agent = user_agent
        self.retry_after = retry_after
        self.auth = auth
        if not 0 < min_se <= session_expires:
            raise ValueError(
                f"SipServer: need 0 < min_se <= session_expires, got {min_se}, {session_expires}"
            )
        self.min_se = min_se
        self.session_expires = session_expires
        #: while True, OPTIONS and new INVITEs get 503
        self.draining = False
        #: malformed datagrams dropped, by :class:`~voxwire.errors.SipParseError` reason
        self.errors: Counter[str] = Counter()
        #: what the server did, by name: ``request_<METHOD>``, ``response_<status>``,
        #: ``retransmitted_<status>`` (responses resent on a timer or to a retransmitted
        #: request), ``retransmitted_BYE``, ``absorbed`` (retransmitted requests and ACKs
        #: that needed nothing), ``stray_response``, ``no_ack``, ``bye_timeout``,
        #: ``overload`` (requests dropped at ``max_transactions``), ``auth_<reason>``
        #: (the verdict on each INVITE, :attr:`voxwire.sip.auth.AuthResult.reason`)
        self.counters: Counter[str] = Counter()
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[SipEvent] = []
        self._server_tx: dict[tuple[str, ...], _ServerTx] = {}
        self._client_tx: dict[str, _ClientTx] = {}
        self._refer_tx: dict[str, str] = {}  # a REFER's branch -> its call
        self._refresh_tx: dict[str, str] = {}  # a session refresh's branch -> its call
        self._transfers: dict[str, bool] = {}  # call -> whether its transfer is over
        self._dialogs: dict[str, _Dialog] = {}  # by local tag (the handle)
        self._negotiated: dict[str, Answer] = {}

    # --- I/O surface -----------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> None:
        """Take one datagram from ``source`` at ``now``."""
        if data.strip(b"\r\n") == b"":
            return  # keep-alive
        try:
            message = parse_message(data, self.limits)
        except SipParseError as e:
            self.errors[e.reason] += 1
            return
        try:
            if isinstance(message, Request):
                # the addresses a dialog keeps must parse before any state is made
                for name in ("Contact", "Record-Route"):
                    for value in message.header_values(name):
                        parse_name_addr(value)
        except SipParseError as e:
            self.errors[e.reason] += 1
            return
        if isinstance(message, Request):
            self._request(message, source, now)
        else:
            self._response(message, now)

    def datagrams(self) -> list[tuple[bytes, Address]]:
        """What to send now, in order; each call returns what came since the last."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[SipEvent]:
        """What happened since the last call, in order."""
        out, self._events = self._events, []
        return out

    @property
    def calls(self) -> int:
        """Dialogs alive (early or established)."""
        return len(self._dialogs)

    @property
    def transactions(self) -> int:
        """Server and client transactions alive."""
        return len(self._server_tx) + len(self._client_tx)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run, or None."""
        times = [t for tx in self._server_tx.values() if (t := tx.deadline()) is not None]
        times += [t for d in self._dialogs.values() if (t := d.deadline()) is not None]
        for ctx in self._client_tx.values():
            times.append(ctx.expires_at)
            if ctx.retransmit_at is not None:
                times.append(ctx.retransmit_at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run every timer due by ``now``."""
        for key, tx in list(self._server_tx.items()):
            if tx.expires_at is not None and now >= tx.expires_at:
                del self._server_tx[key]  # Timer H, I, J or L
                continue
            if tx.retransmit_at is not None and now >= tx.retransmit_at and tx.last is not None:
                self._send(tx.last, tx.dest)  # Timer G
                self.counters[f"retransmitted_{tx.final}"] += 1
                tx.interval = min(2 * tx.interval, self.t2)
                tx.retransmit_at = now + tx.interval
        for dialog in list(self._dialogs.values()):
            if dialog.expire_at is not None and now >= dialog.expire_at:
                # RFC 4028 section 10: no refresh came; the session ends with a BYE
                self.counters["session_expired"] += 1
                self._bye(dialog, now)
                self._events.append(CallEnded(dialog.handle, "session_expired"))
                continue
            if dialog.refresh_at is not None and now >= dialog.refresh_at:
                self._refresh(dialog, now)
            if dialog.ok_at is None or now < dialog.ok_at or dialog.ok is None:
                continue
            if now >= dialog.ok_give_up:
                # section 13.3.1.4: no ACK in 64*T1, the session is ended with a BYE
                dialog.ok_at = None
                self.counters["no_ack"] += 1
                self._bye(dialog, now)
                self._events.append(CallEnded(dialog.handle, "no_ack"))
                continue
            self._send(dialog.ok, dialog.invite.dest)
            self.counters["retransmitted_200"] += 1
            dialog.ok_interval = min(2 * dialog.ok_interval, self.t2)
            dialog.ok_at = min(now + dialog.ok_interval, dialog.ok_give_up)
        for branch, ctx in list(self._client_tx.items()):
            if now >= ctx.expires_at:
                del self._client_tx[branch]  # Timer B, D, F or K
                refer = self._refer_tx.pop(branch, None)
                refreshed = self._refresh_tx.pop(branch, None)
                if ctx.state != "completed" and refer is not None:
                    self.counters["refer_timeout"] += 1
                    self._refer_response(refer, 408)
                elif ctx.state != "completed" and refreshed is not None:
                    self.counters["session_refresh_timeout"] += 1
                    self._refresh_failed(refreshed, now)
                elif ctx.state != "completed":
                    self.counters["bye_timeout"] += 1
                continue
            if ctx.retransmit_at is not None and now >= ctx.retransmit_at:
                self._send(ctx.request, ctx.dest)  # Timer A or E
                self.counters[f"retransmitted_{ctx.method}"] += 1
                if ctx.method == "INVITE":
                    ctx.interval *= 2  # Timer A doubles without a cap (section 17.1.1.2)
                elif ctx.state == "proceeding":
                    ctx.interval = self.t2
                else:
                    ctx.interval = min(2 * ctx.interval, self.t2)
                ctx.retransmit_at = now + ctx.interval

    # --- the application's answers -----------------------------------------------------

    def ring(self, handle: str) -> None:
        """Send 180 Ringing for the call (its dialog becomes early)."""
        dialog = self._dialog(handle)
        if dialog.state != "early" or dialog.invite.final is not None:
            return
        response = self._reply(dialog.invite, 180, dialog=dialog)
        dialog.invite.state = "proceeding"
        dialog.invite.last = response

    def answer(self, handle: str, media_host: str, media_port: int, now: float) -> bytes:
        """Send the 200 with the SDP answer (the stream on ``media_host:media_port``);
        return the SDP sent. The 200 is retransmitted until the ACK (see the module)."""
        dialog = self._dialog(handle)
        tx = dialog.invite
        if tx.final is not None:
            raise RuntimeError(f"call {handle} was already answered or rejected")
        answer = self._negotiated[handle]
        dialog.sdp_id = dialog.sdp_version = secrets.randbelow(2**31 - 1) + 1
        dialog.answer = answer
        dialog.media = (media_host, media_port)
        sdp = dialog.sdp = answer.render(media_host, media_port, session_id=dialog.sdp_id)
        self._accept(tx, dialog, sdp, now, dialog.session_expires)
        return sdp

    def _accept(
        self, tx: _ServerTx, dialog: _Dialog, sdp: bytes, now: float, interval: int
    ) -> None:
        # the 2xx of an INVITE, retransmitted by the core until the ACK (section 13.3.1.4)
        dialog.ok = self._reply(
            tx, 200, dialog=dialog, body=sdp, extra=self._timer_headers(dialog, interval)
        )
        self._arm_session(dialog, interval, now)
        dialog.state = "answered"
        dialog.invite_cseq = tx.request.cseq[0]
        dialog.ok_interval = self.t1
        dialog.ok_at = now + self.t1
        dialog.ok_give_up = now + 64 * self.t1
        tx.state = "accepted"
        tx.final = 200
        tx.retransmit_at = None
        tx.expires_at = now + 64 * self.t1  # Timer L (RFC 6026)

    def reject(self, handle: str, status: int, now: float) -> None:
        """Answer the call with a final ``status`` (4xx-6xx) and forget it."""
        if not 300 <= status <= 699:
            raise ValueError(f"reject: status must be 300-699, got {status}")
        dialog = self._dialog(handle)
        if dialog.invite.final is None:
            self._final(dialog.invite, status, now, dialog=dialog)
        self._end(dialog)

    def hangup(self, handle: str, now: float) -> None:
        """End the call: a BYE once it was answered, else 480 to the INVITE. A call that
        already ended is left alone."""
        dialog = self._dialogs.get(handle)
        if dialog is None:
            return
        if dialog.state == "early":
            self.reject(handle, 480, now)
            return
        dialog.ok_at = None
        self._bye(dialog, now)

    def refer(self, handle: str, target: str, now: float) -> None:
        """Ask the caller of a confirmed call to call ``target`` instead (a blind
        transfer, RFC 3515): REFER with ``Refer-To`` and ``Referred-By``; the 202 and the
        NOTIFYs' sipfrag statuses come back as :class:`CallTransfer` events (each NOTIFY
        gets 200). The call stays up: the application hangs up once it succeeded."""
        dialog = self._dialog(handle)
        if dialog.state != "confirmed":
            raise KeyError(f"refer: the call {handle!r} is not confirmed")
        if self._transfers.get(handle) is False:
            raise RuntimeError("refer: a transfer of this call is in progress")
        branch = MAGIC_COOKIE + _token()
        wire, dest = self._in_dialog_request(
            dialog,
            "REFER",
            branch,
            [
                ("Contact", f"<sip:{self._hostport()}{self._uri_transport()}>"),
                ("Refer-To", f"<{target}>"),
                ("Referred-By", f"<{dialog.local.uri}>"),
            ],
        )
        self._client_tx[branch] = _ClientTx(
            wire, dest, now, self.t1, None if self.reliable else now + self.t1, now + 64 * self.t1
        )
        self._refer_tx[branch] = handle
        self._transfers[handle] = False
        self.counters["request_sent_REFER"] += 1
        self._send(wire, dest)

    def _in_dialog_request(
        self,
        dialog: _Dialog,
        method: str,
        branch: str,
        extra: list[tuple[str, str]],
        *,
        body: bytes = b"",
        cseq: int | None = None,
    ) -> tuple[bytes, Address]:
        """A request in ``dialog`` and where it goes: the next local CSeq, or ``cseq`` (an
        ACK's, which is the INVITE's)."""
        if cseq is None:
            dialog.local_cseq += 1
            cseq = dialog.local_cseq
        headers = [
            ("Via", f"SIP/2.0/{self.transport} {self._hostport()};branch={branch};rport"),
            ("Max-Forwards", "70"),
        ]
        headers += [("Route", r) for r in dialog.route_set]
        headers += [
            ("From", dialog.local.encode()),
            ("To", dialog.remote.encode()),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("User-Agent", self.user_agent),
            *extra,
        ]
        wire = Request(method, dialog.remote_target, headers, body).encode()
        first_hop = (
            parse_name_addr(dialog.route_set[0]).uri if dialog.route_set else dialog.remote_target
        )
        dest = dialog.source if self.reliable else _uri_address(first_hop) or dialog.source
        return wire, dest

    def _transfer_notify(self, tx: _ServerTx, dialog: _Dialog, now: float) -> None:
        # RFC 3515 section 2.4.5: the progress of the REFER, as a sipfrag status line
        request = tx.request
        event = (request.header("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            self._final(tx, 489, now, dialog=dialog)
            return
        self._final(tx, 200, now, dialog=dialog)
        if self._transfers.get(dialog.handle) is not False:
            return  # over already: a late NOTIFY
        status = sipfrag_status(request.body)
        state = (request.header("Subscription-State") or "").strip().lower()
        terminated = state.startswith("terminated")
        if status is None:
            if terminated:
                self._transfers[dialog.handle] = True
                self._events.append(CallTransfer(dialog.handle, 500, True))
            return
        final = status >= 200 or terminated
        if final:
            self._transfers[dialog.handle] = True
        self._events.append(CallTransfer(dialog.handle, status, final))

    def _refer_response(self, handle: str, status: int) -> None:
        if self._transfers.get(handle) is not False or status < 200:
            return
        if status >= 300:
            self._transfers[handle] = True
        self._events.append(CallTransfer(handle, status, status >= 300))

    # --- requests ----------------------------------------------------------------------

    def _request(self, request: Request, source: Address, now: float) -> None:
        method = request.method
        self.counters[f"request_{method}"] += 1
        via = request.vias[0]
        key = self._key(request, via, "INVITE" if method == "ACK" else method)
        if method == "ACK":
            self._ack(request, key, now)
            return
        tx = self._server_tx.get(key)
        if tx is not None:
            # a retransmission (sections 17.2.1, 17.2.2)
            if tx.last is not None and tx.state != "accepted":
                self._send(tx.last, tx.dest)
                self.counters[f"retransmitted_{tx.final or 100}"] += 1
            else:
                self.counters["absorbed"] += 1
            return
        if len(self._server_tx) + len(self._client_tx) >= self.max_transactions:
            self.counters["overload"] += 1
            return
        tx = _ServerTx(
            request, source, self._response_address(via, source), via, method == "INVITE"
        )
        self._server_tx[key] = tx
        if method == "CANCEL":
            self._cancel(tx, key, now)
            return
        to_tag = request.to.tag
        dialog = self._dialogs.get(to_tag) if to_tag else None
        if dialog is not None and (
            dialog.call_id != request.call_id or dialog.remote_tag != request.from_.tag
        ):
            dialog = None
        if to_tag and dialog is None:
            self._final(tx, 481, now)  # section 12.2.2
            return
        scheme = request.uri.split(":")[0].lower()
        if scheme not in ("sip", "sips"):
            self._final(tx, 416, now)
            return
        if scheme == "sips" and self.transport != "TLS":
            self.counters["sips_without_tls"] += 1
            self._final(tx, 416, now)
            return
        unsupported = [r for r in request.header_values("Require") if r.lower() != SUPPORTED]
        if unsupported:
            self._final(tx, 420, now, extra=[("Unsupported", ", ".join(unsupported))])
            return
        if dialog is not None:
            cseq = request.cseq[0]
            if cseq <= dialog.remote_cseq:
                self._final(tx, 500, now)  # section 12.2.2
                return
            dialog.remote_cseq = cseq
        if method == "INVITE":
            if dialog is not None:
                self._reinvite(tx, dialog, now)
            else:
                self._invite(tx, now)
        elif method == "UPDATE":
            if dialog is None:
                self._final(tx, 481, now)  # RFC 3311 section 5.2: only inside a dialog
                return
            self._update(tx, dialog, now)
        elif method == "BYE":
            if dialog is None:
                self._final(tx, 481, now)
                return
            self._final(tx, 200, now, dialog=dialog)
            if dialog.invite.final is None:
                self._final(dialog.invite, 487, now, dialog=dialog)
            self._end(dialog)
            self._events.append(CallEnded(dialog.handle, "remote_bye"))
        elif method == "OPTIONS":
            if self.draining and dialog is None:
                self._final(tx, 503, now, extra=[("Retry-After", str(self.retry_after))])
            else:
                self._final(tx, 200, now, dialog=dialog, extra=self._capabilities())
        elif method == "NOTIFY" and dialog is not None and dialog.handle in self._transfers:
            self._transfer_notify(tx, dialog, now)
        elif method in _KNOWN_UNSUPPORTED:
            self._final(tx, 405, now, dialog=dialog, extra=[("Allow", ALLOW)])
        else:
            self._final(tx, 501, now, dialog=dialog)

    def _capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", SUPPORTED)]

    def _session_timer(self, tx: _ServerTx, now: float) -> _Grant | None:
        """The session interval to grant an INVITE, re-INVITE or UPDATE (RFC 4028 section
        9) and who refreshes; None when it was answered 422 (too small) or 400."""
        request = tx.request
        supported = "timer" in {v.lower() for v in request.header_values("Supported")}
        allow = {v.upper() for v in request.header_values("Allow")}
        value = request.header("Session-Expires")
        if value is None:
            return _Grant(0, False, supported, "UPDATE" in allow, self.min_se)
        parsed = _session_expires(value)
        if parsed is None:
            self._final(tx, 400, now, dialog=tx.dialog)
            return None
        interval, refresher = parsed
        min_se = self.min_se
        peer_min = (request.header("Min-SE") or "").split(";")[0].strip()
        if peer_min.isdigit() and len(peer_min) <= 10:
            min_se = max(min_se, int(peer_min))
        if not supported:
            # a proxy asked for the timer, the caller cannot refresh (or act on a 422):
            # voxwire refreshes, at no less than its Min-SE (section 9, table 2)
            self.counters["session_refreshed_by_voxwire"] += 1
            interval = max(min(interval, self.session_expires), min_se)
            return _Grant(interval, True, False, "UPDATE" in allow, min_se)
        if interval < self.min_se:
            self.counters["session_too_small"] += 1
            self._final(tx, 422, now, dialog=tx.dialog, extra=[("Min-SE", str(self.min_se))])
            return None
        # the request's refresher is kept; when it names none, the caller refreshes
        interval = max(min(interval, self.session_expires), min_se)
        return _Grant(interval, refresher == "uas", True, "UPDATE" in allow, min_se)

    def _timer_headers(self, dialog: _Dialog, interval: int) -> list[tuple[str, str]]:
        if not interval:
            return []
        # the refresher is named as the request's sides: uac the caller, uas voxwire
        headers = [("Session-Expires", f"{interval};refresher={_side(dialog.we_refresh)}")]
        if dialog.timer_supported:
            headers.append(("Require", "timer"))  # never to a caller that does not know it
        return headers

    def _grant(self, dialog: _Dialog, grant: _Grant) -> None:
        dialog.session_expires = grant.interval
        dialog.we_refresh = grant.we_refresh and grant.interval > 0
        dialog.timer_supported = grant.supported
        dialog.update_allowed = dialog.update_allowed or grant.update_allowed
        dialog.min_se = max(dialog.min_se, grant.min_se)

    def _arm_session(self, dialog: _Dialog, interval: int, now: float) -> None:
        # RFC 4028 section 10: the side that does not refresh sends its BYE a third of the
        # interval (at most 32 s) before the session would expire; the refresher sends its
        # refresh at half the interval, and its BYE at the same time before the end when no
        # refresh went through
        dialog.session_expires = interval
        dialog.expire_at = now + interval - min(32.0, interval / 3) if interval else None
        dialog.refresh_at = now + interval / 2 if interval and dialog.we_refresh else None

    def _invite(self, tx: _ServerTx, now: float) -> None:
        request = tx.request
        user = ""
        if self.auth is not None:
            # before anything else: an unauthenticated peer learns nothing of the server
            verdict = self.auth.check(request, tx.source, now)
            self.counters[f"auth_{verdict.reason}"] += 1
            if verdict.outcome == "forbidden":
                self._final(tx, 403, now)
                return
            if verdict.outcome == "challenge":
                challenge = self.auth.challenge(now, stale=verdict.stale)
                self._final(tx, self.auth.status, now, extra=challenge)
                return
            user = verdict.user
        busy = self.draining or len(self._dialogs) >= self.max_calls
        if busy:
            self._final(tx, 503, now, extra=[("Retry-After", str(self.retry_after))])
            return
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if request.body and content_type != "application/sdp":
            self._final(tx, 415, now, extra=[("Accept", "application/sdp")])
            return
        if not request.body:
            # an offerless INVITE wants the offer in the 200 and the answer in the ACK
            self._final(tx, 488, now, extra=[("Warning", '399 voxwire "no SDP offer"')])
            return
        try:
            answer = answer_offer(parse_sdp(request.body), self.codecs, srtp=self.srtp)
        except SdpError as e:
            self.errors[f"sdp_{e.reason}"] += 1
            if e.reason in ("no_common_codec", "no_media", "srtp_needs_tls"):
                self._final(
                    tx, 488, now, extra=[("Warning", '305 voxwire "Incompatible media format"')]
                )
            else:
                self._final(tx, 400, now)
            return
        grant = self._session_timer(tx, now)
        if grant is None:
            return
        contact = request.header_values("Contact")
        remote_target = parse_name_addr(contact[0]).uri if contact else request.from_.uri
        handle = _token()
        while handle in self._dialogs:
            handle = _token()
        dialog = _Dialog(
            handle=handle,
            call_id=request.call_id,
            remote_tag=request.from_.tag,
            local=request.to.with_tag(handle),
            remote=request.from_,
            remote_target=remote_target,
            route_set=request.header_values("Record-Route"),
            source=tx.source,
            invite=tx,
            invite_cseq=request.cseq[0],
            remote_cseq=request.cseq[0],
        )
        self._grant(dialog, grant)
        self._dialogs[handle] = dialog
        self._negotiated[handle] = answer
        tx.dialog = dialog
        tx.last = self._reply(tx, 100)
        tx.state = "proceeding"
        self._events.append(IncomingCall(handle, request.call_id, answer, request, tx.source, user))

    def _retry_later(self, tx: _ServerTx, now: float, dialog: _Dialog) -> None:
        # section 14.2, RFC 3311 section 5.2: 500 and a random Retry-After of 0-10 s
        extra = [("Retry-After", str(secrets.randbelow(11)))]
        self._final(tx, 500, now, dialog=dialog, extra=extra)

    @staticmethod
    def _inviting(dialog: _Dialog) -> bool:
        """voxwire's refresh re-INVITE (an offer) is waiting for its final response."""
        return bool(dialog.refreshing) and dialog.refresh_method == "INVITE"

    def _offer_pending(self, tx: _ServerTx, now: float, dialog: _Dialog) -> None:
        # voxwire's own offer (the 2xx of a re-INVITE without one, awaiting the ACK's
        # answer, or its refresh re-INVITE, awaiting the final response): a new offer
        # crosses it (RFC 3261 section 14.2, RFC 3264 section 4, RFC 3311 section 5.2)
        self.counters["offer_pending"] += 1
        self._final(tx, 491, now, dialog=dialog)

    def _reinvite(self, tx: _ServerTx, dialog: _Dialog, now: float) -> None:
        if (dialog.state == "answered" and dialog.offer_in_ok) or self._inviting(dialog):
            self._offer_pending(tx, now, dialog)
            return
        if dialog.state != "confirmed":
            # an INVITE while the dialog's last one is open: no final response to it yet
            # (early), or its 2xx not yet acknowledged
            self.counters["overlapping_INVITE"] += 1
            self._retry_later(tx, now, dialog)
            return
        tx.dialog = dialog
        grant = self._session_timer(tx, now)  # a re-INVITE refreshes the session
        if grant is None:
            return
        if not tx.request.body:
            # no offer: the 200 offers the session as it is, the ACK answers (RFC 3264 s. 8)
            dialog.offer_in_ok = True
            dialog.invite = tx
            self._grant(dialog, grant)
            self._accept(tx, dialog, dialog.sdp, now, grant.interval)
            return
        sdp = self._renegotiate(tx, dialog, now)
        if sdp is None:
            return
        dialog.offer_in_ok = False
        dialog.invite = tx
        self._grant(dialog, grant)
        self._accept(tx, dialog, sdp, now, grant.interval)

    def _update(self, tx: _ServerTx, dialog: _Dialog, now: float) -> None:
        if dialog.state == "early" or dialog.answer is None:
            # the INVITE's offer is not answered yet (RFC 3311 section 5.2)
            self.counters["overlapping_UPDATE"] += 1
            self._retry_later(tx, now, dialog)
            return
        if (dialog.offer_in_ok or self._inviting(dialog)) and tx.request.body:
            self._offer_pending(tx, now, dialog)
            return
        tx.dialog = dialog
        grant = self._session_timer(tx, now)  # an UPDATE refreshes the session
        if grant is None:
            return
        sdp = b""
        if tx.request.body:
            new = self._renegotiate(tx, dialog, now)
            if new is None:
                return
            sdp = new
        self._grant(dialog, grant)
        extra = self._timer_headers(dialog, grant.interval)
        self._final(tx, 200, now, dialog=dialog, body=sdp, extra=extra)
        self._arm_session(dialog, grant.interval, now)

    def _negotiate(self, body: bytes, dialog: _Dialog) -> Answer:
        # a new offer of the call's stream: the codec and its payload type stay (the RTP
        # session is made for them), everything else may change
        assert dialog.answer is not None
        current = dialog.answer
        new = answer_offer(parse_sdp(body), (current.codec,), srtp=self.srtp, keep=current.crypto)
        if (new.payload_type, new.clock_rate) != (current.payload_type, current.clock_rate):
            raise SdpError("codec_changed", "a new offer must keep the call's codec")
        old_keys = None if current.crypto is None else current.crypto.remote_key
        if old_keys != (None if new.crypto is None else new.crypto.remote_key):
            # the media path is keyed once per call: a re-offer keeps its SRTP or its RTP
            raise SdpError("crypto_changed", "a new offer must keep the call's SRTP keys")
        new = replace(new, ptime=current.ptime)
        if new.remote[0] in _NOWHERE:
            # RFC 3264 section 8.4 (RFC 2543 hold): nothing may be sent to 0.0.0.0
            direction = {"sendrecv": "recvonly", "sendonly": "inactive"}
            new = replace(new, direction=direction.get(new.direction, new.direction))
        return new

    def _renegotiate(self, tx: _ServerTx, dialog: _Dialog, now: float) -> bytes | None:
        """The answer to the offer of a re-INVITE or UPDATE, or None when it was refused
        (the session stays as it was, section 14.2)."""
        request = tx.request
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/sdp":
            self._final(tx, 415, now, dialog=dialog, extra=[("Accept", "application/sdp")])
            return None
        try:
            new = self._negotiate(request.body, dialog)
        except SdpError as e:
            self.errors[f"sdp_{e.reason}"] += 1
            if e.reason in (
                "no_common_codec",
                "no_media",
                "codec_changed",
                "crypto_changed",
                "srtp_needs_tls",
            ):
                warning = '305 voxwire "Incompatible media format"'
                self._final(tx, 488, now, dialog=dialog, extra=[("Warning", warning)])
            else:
                self._final(tx, 400, now, dialog=dialog)
            return None
        return self._apply(dialog, new, request.method)

    def _apply(self, dialog: _Dialog, new: Answer, method: str) -> bytes:
        # the answer's SDP: the o= version grows when anything changed (RFC 3264 section 8)
        host, port = dialog.media
        sdp = new.render(host, port, session_id=dialog.sdp_id, version=dialog.sdp_version)
        if sdp != dialog.sdp:
            dialog.sdp_version += 1
            sdp = new.render(host, port, session_id=dialog.sdp_id, version=dialog.sdp_version)
        dialog.answer = new
        dialog.sdp = sdp
        self.counters["session_updated"] += 1
        self._events.append(CallUpdated(dialog.handle, new, method))
        return sdp

    def _ack(self, request: Request, key: tuple[str, ...], now: float) -> None:
        tag = request.to.tag
        dialog = self._dialogs.get(tag) if tag else None
        if (
            dialog is not None
            and dialog.call_id == request.call_id
            and dialog.remote_tag == request.from_.tag
            and request.cseq[0] == dialog.invite_cseq
            and dialog.state == "answered"
        ):
            dialog.state = "confirmed"
            dialog.ok_at = None
            if dialog.offer_in_ok:
                dialog.offer_in_ok = False
                self._answer_in_ack(request, dialog)
            if not dialog.confirmed_once:
                dialog.confirmed_once = True
                self._events.append(CallConfirmed(dialog.handle))
            return
        tx = self._server_tx.get(key)
        if tx is not None and tx.state == "completed":
            tx.state = "confirmed"  # ACK of a non-2xx final response
            tx.retransmit_at = None
            tx.expires_at = now + (0.0 if self.reliable else self.t4)  # Timer I
            return
        self.counters["absorbed"] += 1

    def _answer_in_ack(self, request: Request, dialog: _Dialog) -> None:
        # the answer to the 200's offer (a re-INVITE without one); a bad or missing answer
        # leaves the session as it was
        if not request.body:
            return
        try:
            new = self._negotiate(request.body, dialog)
        except SdpError as e:
            self.errors[f"sdp_{e.reason}"] += 1
            return
        dialog.answer = new  # dialog.sdp stays what was sent: the 200's offer
        self.counters["session_updated"] += 1
        self._events.append(CallUpdated(dialog.handle, new, "ACK"))

    def _cancel(self, tx: _ServerTx, key: tuple[str, ...], now: float) -> None:
        invite = self._server_tx.get((*key[:-1], "INVITE"))
        if invite is None or not invite.invite:
            self._final(tx, 481, now)
            return
        dialog = invite.dialog
        self._final(tx, 200, now, dialog=dialog)
        if invite.final is None:
            self._final(invite, 487, now, dialog=dialog)
            if dialog is not None:
                self._end(dialog)
                self._events.append(CallCancelled(dialog.handle))

    # --- responses ---------------------------------------------------------------------

    def _response(self, response: Response, now: float) -> None:
        via = response.vias[0]
        ctx = self._client_tx.get(via.branch)
        refreshed = self._refresh_tx.get(via.branch)
        if ctx is not None and refreshed is not None and response.cseq[1] == ctx.method:
            self._refresh_response(ctx, refreshed, via.branch, response, now)
            return
        handle = self._refer_tx.get(via.branch)
        if ctx is not None and handle is not None and response.cseq[1] == "REFER":
            self._refer_response(handle, response.status)
        elif ctx is None or response.cseq[1] != "BYE":
            self.counters["stray_response"] += 1
            return
        self.counters[f"received_{response.status}"] += 1
        if response.status < 200:
            if ctx.state == "trying":
                ctx.state = "proceeding"
            return
        if ctx.state != "completed":
            ctx.state = "completed"
            ctx.retransmit_at = None
            ctx.expires_at = now + (0.0 if self.reliable else self.t4)  # Timer K

    # --- voxwire as the session refresher (RFC 4028 section 7.4) -----------------------

    def _refresh(self, dialog: _Dialog, now: float) -> None:
        """Send the session refresh: UPDATE without a body when the caller allows it, else
        a re-INVITE offering the session as it is (the last SDP sent, its version kept)."""
        dialog.refresh_at = None
        if dialog.refreshing:
            return  # one is in flight: its response arms the next
        if dialog.state != "confirmed":
            dialog.refresh_at = now + 1.0  # the caller's re-INVITE is open: after it
            return
        branch = MAGIC_COOKIE + _token()
        method = "UPDATE" if dialog.update_allowed else "INVITE"
        extra = [
            ("Contact", f"<sip:{self._hostport()}{self._uri_transport()}>"),
            ("Supported", SUPPORTED),
            ("Session-Expires", f"{dialog.session_expires};refresher=uac"),  # voxwire's
            ("Min-SE", str(dialog.min_se or self.min_se)),
        ]
        body = b""
        if method == "INVITE":
            extra.append(("Content-Type", "application/sdp"))
            body = dialog.sdp
        wire, dest = self._in_dialog_request(dialog, method, branch, extra, body=body)
        self._client_tx[branch] = _ClientTx(
            wire,
            dest,
            now,
            self.t1,
            None if self.reliable else now + self.t1,  # Timer A or E
            now + 64 * self.t1,  # Timer B or F
            method=method,
        )
        self._refresh_tx[branch] = dialog.handle
        dialog.refreshing = branch
        dialog.refresh_method = method
        self.counters[f"request_sent_{method}"] += 1
        self._send(wire, dest)

    def _refresh_response(
        self, ctx: _ClientTx, handle: str, branch: str, response: Response, now: float
    ) -> None:
        self.counters[f"received_{response.status}"] += 1
        status = response.status
        if status < 200:
            if ctx.state == "trying":
                ctx.state = "proceeding"
                if ctx.method == "INVITE":
                    ctx.retransmit_at = None  # section 17.1.1.2: no more retransmissions
            return
        if ctx.state == "completed":
            if ctx.ack:
                self._send(ctx.ack, ctx.dest)  # the final again: so is its ACK
            return
        ctx.state = "completed"
        ctx.retransmit_at = None
        dialog = self._dialogs.get(handle)
        if ctx.method == "INVITE":
            # a 2xx is acknowledged end to end (a new branch, section 13.2.2.4), a failure
            # within the transaction (its branch, section 17.1.1.3); either ACK is sent
            # again for each retransmission of the final, which keeps coming for 64*T1
            if dialog is not None:
                ack_branch = MAGIC_COOKIE + _token() if status < 300 else branch
                ctx.ack, _ = self._in_dialog_request(
                    dialog, "ACK", ack_branch, [], cseq=response.cseq[0]
                )
                self._send(ctx.ack, ctx.dest)
            ctx.expires_at = now + 64 * self.t1  # Timer D at least, and the 2xx's span
        else:
            ctx.expires_at = now + (0.0 if self.reliable else self.t4)  # Timer K
        if dialog is None or dialog.refreshing != branch:
            return
        dialog.refreshing = ""
        if status < 300:
            self.counters["session_refreshed"] += 1
            parsed = _session_expires(response.header("Session-Expires") or "")
            if parsed is None:
                # a 2xx without Session-Expires: the session no longer expires (section 7.2)
                dialog.we_refresh = False
                self._arm_session(dialog, 0, now)
                return
            interval, refresher = parsed
            dialog.we_refresh = refresher != "uas"  # uac: voxwire, who sent the refresh
            self._arm_session(dialog, max(interval, 1), now)
        elif status == 422:
            wanted = (response.header("Min-SE") or "").split(";")[0].strip()
            if wanted.isdigit() and len(wanted) <= 10 and int(wanted) > dialog.session_expires:
                # section 7.3 (via 8.1): again at once, with the interval the peer wants
                dialog.min_se = int(wanted)
                dialog.session_expires = int(wanted)
                self._refresh(dialog, now)
            else:
                self.counters["session_refresh_rejected"] += 1
        elif status == 491:
            # section 14.1: glare; the Call-ID is the caller's, so again in 0-2 s
            dialog.refresh_at = now + secrets.randbelow(2001) / 1000
        elif status in (408, 481):
            self._refresh_failed(handle, now)  # section 10: the session is gone
        else:
            # the session stands until it expires; the caller may still refresh it
            self.counters["session_refresh_rejected"] += 1

    def _refresh_failed(self, handle: str, now: float) -> None:
        dialog = self._dialogs.get(handle)
        if dialog is None:
            return
        self.counters["session_refresh_failed"] += 1
        self._bye(dialog, now)
        self._events.append(CallEnded(handle, "session_refresh_failed"))

    # --- building and sending --------------------------------------------------------

    def _key(self, request: Request, via: Via, method: str) -> tuple[str, ...]:
        if via.branch.startswith(MAGIC_COOKIE):
            return (via.branch, via.host.lower(), str(via.port or 5060), method)
        # RFC 2543 peers (section 17.2.3): the request's identifying fields
        return (
            request.call_id,
            request.from_.tag,
            str(request.cseq[0]),
            via.encode(),
            method,
        )

    def _response_address(self, via: Via, source: Address) -> Address:
        if self.reliable:
            return source  # the connection the request came on (section 18.2.2)
        # section 18.2.2 (unreliable unicast) with RFC 3581 section 4
        if "rport" in via.params:
            return source
        if "received" in via.params and _is_ip(via.params["received"]):
            return (via.params["received"], via.port or 5060)
        return (source[0], via.port or 5060)

    def _top_via(self, tx: _ServerTx) -> str:
        params = dict(tx.via.params)
        if tx.via.host.strip("[]") != tx.source[0]:
            params["received"] = tx.source[0]
        if "rport" in params:
            params["rport"] = str(tx.source[1])
        return Via(tx.via.transport, tx.via.host, tx.via.port, params).encode()

    def _reply(
        self,
        tx: _ServerTx,
        status: int,
        *,
        dialog: _Dialog | None = None,
        body: bytes = b"",
        extra: list[tuple[str, str]] | None = None,
    ) -> bytes:
        request = tx.request
        headers: list[tuple[str, str]] = []
        vias = request.header_values("Via")
        headers.append(("Via", self._top_via(tx)))
        headers += [("Via", v) for v in vias[1:]]
        to = request.header("To") or ""
        if status > 100 and not request.to.tag:
            # the request's To as it came, with the tag appended (section 8.2.6.2)
            tag = dialog.handle if dialog is not None else tx.via.branch[-16:] or _token()
            to = f"{to};tag={tag}"
        headers += [
            ("From", request.header("From") or ""),
            ("To", to),
            ("Call-ID", request.call_id),
            ("CSeq", request.header("CSeq") or ""),
        ]
        if request.method in ("INVITE", "UPDATE") and dialog is not None and 100 < status < 300:
            headers += [("Record-Route", r) for r in request.header_values("Record-Route")]
            headers.append(("Contact", f"<{self._contact(request)}>"))
        if status == 200 and request.method in ("INVITE", "UPDATE"):
            headers += [("Allow", ALLOW), ("Supported", SUPPORTED)]
        headers.append(("Server", self.user_agent))
        headers += extra or []
        if body:
            headers.append(("Content-Type", "application/sdp"))
        wire = Response(status, _REASONS.get(status, "Unknown"), headers, body).encode()
        self.counters[f"response_{status}"] += 1
        self._send(wire, tx.dest)
        return wire

    def _final(
        self,
        tx: _ServerTx,
        status: int,
        now: float,
        *,
        dialog: _Dialog | None = None,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        tx.last = self._reply(tx, status, dialog=dialog, extra=extra, body=body)
        tx.final = status
        tx.state = "completed"
        if tx.invite:
            tx.interval = self.t1
            tx.retransmit_at = None if self.reliable else now + self.t1  # Timer G
            tx.expires_at = now + 64 * self.t1  # Timer H
        else:
            tx.expires_at = now + (0.0 if self.reliable else 64 * self.t1)  # Timer J

    def _uri_transport(self) -> str:
        return {"TCP": ";transport=tcp", "TLS": ";transport=tls"}.get(self.transport, "")

    def _contact(self, request: Request) -> str:
        # section 12.1.1: a sips Request-URI gets a sips Contact (it came over TLS)
        if self.transport == "TLS" and request.uri[:5].lower() == "sips:":
            return f"sips:{self._hostport()}"
        return f"sip:{self._hostport()}{self._uri_transport()}"

    def _hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _bye(self, dialog: _Dialog, now: float) -> None:
        if dialog.state == "ended":
            return
        branch = MAGIC_COOKIE + _token()
        # over TCP the dialog's connection; over UDP the first hop, when it is an address
        wire, dest = self._in_dialog_request(dialog, "BYE", branch, [])
        self._client_tx[branch] = _ClientTx(
            wire,
            dest,
            now,
            self.t1,
            None if self.reliable else now + self.t1,  # Timer E
            now + 64 * self.t1,  # Timer F
        )
        self.counters["request_sent_BYE"] += 1
        self._send(wire, dest)
        self._end(dialog)

    def _end(self, dialog: _Dialog) -> None:
        self._transfers.pop(dialog.handle, None)
        dialog.state = "ended"
        dialog.ok_at = None
        self._dialogs.pop(dialog.handle, None)
        self._negotiated.pop(dialog.handle, None)

    def _dialog(self, handle: str) -> _Dialog:
        dialog = self._dialogs.get(handle)
        if dialog is None:
            raise KeyError(f"no call {handle!r} (it ended or was never made)")
        return dialog

    def _send(self, wire: bytes, dest: Address) -> None:
        self._out.append((wire, dest))
