"""Inbound authentication of SIP calls: a digest challenge (RFC 3261 section 22, RFC 7616,
SHA-256 per RFC 8760) and a source allow-list. Sans-I/O: requests and ``now`` in,
a verdict out.

>>> from voxwire.sip.auth import Authenticator
>>> auth = Authenticator({"trunk": "s3cret"}, realm="bot.example", secret=b"k" * 32)
>>> for _, value in auth.challenge(now=0.0):
...     print(value.split(", nonce=")[0])
Digest realm="bot.example", algorithm=SHA-256, qop="auth"
Digest realm="bot.example", algorithm=MD5, qop="auth"

The scheme
----------
A call from an address of ``allow`` (networks, e.g. a carrier's signalling addresses)
passes as it is. Any other INVITE must carry an ``Authorization`` that
:meth:`Authenticator.check` accepts, else the server answers 401 with one
``WWW-Authenticate`` per algorithm, in order of preference (SHA-256 before MD5, RFC 8760
section 2.4), each with ``qop="auth"``. Without credentials (only ``allow``), every other
source is refused (403).

With ``proxy=True`` the challenge is a proxy's (section 22.3): 407 with
``Proxy-Authenticate``, and the credentials are read from ``Proxy-Authorization``. That is
for a server that stands where a proxy would (a trunk's calls reach it as they would reach
the carrier's edge proxy, and the trunk's equipment answers only 407), or a caller that
expects it; the digest, nonces and checks are the same.

Nonces are stateless and bound to the server's secret: the issue time (milliseconds of
``now``) and an HMAC-SHA256 of it and the realm under ``secret`` (random per server
unless given), so a forged or altered nonce fails and no table of issued nonces is kept.
A nonce older than ``nonce_ttl`` seconds is stale: a request whose digest is right but
whose nonce expired is challenged again with ``stale=true`` (RFC 7616 section 3.3), so
the client retries with the new nonce without asking its user. The response must use
``qop=auth`` (the ``cnonce`` and the nonce count are in the hash); the nonce count of a
nonce must grow from one request to the next (RFC 7616 section 3.4.5), which stops the
replay of a captured INVITE; the server keeps the last count of the ``max_nonces``
nonces used most recently. The digest URI must name the Request-URI's scheme, host and
port (the user part may be left out: SIPp 3.6.1 does), the realm must be ours.
Digests are compared in constant time. Passwords are never in an error message, a
counter or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from voxwire.sip.message import Request

__all__ = ["ALGORITHMS", "AuthResult", "Authenticator", "load_credentials", "parse_digest"]

Address = tuple[str, int]

ALGORITHMS: Final[dict[str, str]] = {"SHA-256": "sha256", "MD5": "md5"}
"""The digest algorithms (RFC 8760 section 2.2 names) and their hashlib names."""

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|$)')
_NC = re.compile(r"^[0-9A-Fa-f]{8}$")

Outcome = Literal["pass", "challenge", "forbidden"]


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The verdict on one request."""

    outcome: Outcome
    """``pass``: take the call; ``challenge``: answer 401 (:meth:`Authenticator.challenge`);
    ``forbidden``: answer 403."""
    reason: str
    """Why, for a counter: ``allowed`` (source in the allow-list), ``authorized``, or what
    failed: ``no_credentials``, ``not_allowed``, ``bad_header``, ``wrong_realm``,
    ``bad_algorithm``, ``bad_qop``, ``wrong_uri``, ``bad_nonce``, ``stale``, ``replay``,
    ``unknown_user``, ``wrong_password``."""
    user: str = ""
    """The authenticated user (``authorized`` only)."""
    stale: bool = False
    """Challenge with ``stale=true``: the digest was right, the nonce had expired."""


def parse_digest(value: str) -> dict[str, str] | None:
    """The parameters of a ``Digest`` credentials value (names in lower case, quotes
    removed), or None when it is not one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        name, raw = m.group(1).lower(), m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if name in params:
            return None  # a parameter twice is ambiguous
        params[name] = raw
        pos = m.end()
    return params


def load_credentials(text: str) -> dict[str, str]:
    """``USER:PASSWORD`` lines (blank lines and ``#`` comments skipped) as a mapping.

    Raises
    ------
    ValueError
        A line without ``:`` or with an empty user or password, or a user twice; the
        message names the line number, never its text.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        user = user.strip()
        if not sep or not user or not password or any(c in user for c in '"\\'):
            raise ValueError(f"credentials line {number}: expected USER:PASSWORD")
        if user in out:
            raise ValueError(f"credentials line {number}: user {user!r} given twice")
        out[user] = password
    return out


class Authenticator:
    """The verdict on INVITEs: the allow-list, then the digest; see the module docstring.

    Parameters
    ----------
    credentials : mapping of str to str, optional
        Passwords by user name; None or empty: no digest, only ``allow``.
    realm : str
        The protection realm in the challenge (a quoted string: no ``"`` or ``\\``).
    allow : iterable of str
        Networks (``203.0.113.0/24``, ``192.0.2.7``) whose calls pass unchallenged.
    algorithms : tuple of {"SHA-256", "MD5"}
        The algorithms offered, in order of preference.
    nonce_ttl : float
        Seconds a nonce is good for.
    secret : bytes, optional
        The key nonces are bound to (32 random bytes by default; give the same one to
        servers that share a realm behind one balancer).
    max_nonces : int
        Nonces whose last nonce count is remembered.
    proxy : bool
        Challenge as a proxy: 407 with ``Proxy-Authenticate``, credentials in
        ``Proxy-Authorization`` (section 22.3); default 401 with ``WWW-Authenticate``,
        credentials in ``Authorization``.
    """

    def __init__(
        self,
        credentials: Mapping[str, str] | None = None,
        *,
        realm: str = "voxwire",
        allow: Iterable[str] = (),
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        nonce_ttl: float = 300.0,
        secret: bytes | None = None,
        max_nonces: int = 4096,
        proxy: bool = False,
    ) -> None:
        if not realm or any(c in realm for c in '"\\\r\n'):
            raise ValueError("Authenticator: the realm must be non-empty, without quotes")
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(
                f"Authenticator: algorithms must be of {', '.join(ALGORITHMS)}, got {algorithms}"
            )
        if not nonce_ttl > 0 or max_nonces < 1:
            raise ValueError(
                f"Authenticator: nonce_ttl and max_nonces must be positive, got "
                f"{nonce_ttl}, {max_nonces}"
            )
        self._credentials = dict(credentials or {})
        self.realm = realm
        self.allow = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in allow)
        if not self._credentials and not self.allow:
            raise ValueError("Authenticator: needs credentials, an allow-list, or both")
        self.algorithms = algorithms
        self.nonce_ttl = nonce_ttl
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.max_nonces = max_nonces
        self._counts: OrderedDict[str, int] = OrderedDict()
        self.proxy = proxy
        #: The status of a challenge: 401, or 407 with ``proxy``.
        self.status: Final[int] = 407 if proxy else 401
        self._challenge_header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        self._credentials_header = "Proxy-Authorization" if proxy else "Authorization"

    def __repr__(self) -> str:  # never the passwords
        return (
            f"Authenticator(users={len(self._credentials)}, realm={self.realm!r}, "
            f"allow={[str(n) for n in self.allow]}, algorithms={self.algorithms}, "
            f"challenge={self.status})"
        )

    @property
    def users(self) -> int:
        """How many users have a password."""
        return len(self._credentials)

    # --- nonces ------------------------------------------------------------------------

    def _mac(self, stamp: bytes) -> bytes:
        return hmac.new(self._secret, stamp + self.realm.encode(), hashlib.sha256).digest()[:16]

    def nonce(self, now: float) -> str:
        """A nonce issued at ``now``."""
        stamp = max(0, int(now * 1000)).to_bytes(8, "big")
        return base64.urlsafe_b64encode(stamp + self._mac(stamp)).decode().rstrip("=")

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        # seconds since the nonce was issued, or None when it is not one of ours
        if len(nonce) != 32:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce)
        except ValueError:
            return None
        if len(raw) != 24 or not hmac.compare_digest(raw[8:], self._mac(raw[:8])):
            return None
        return now - int.from_bytes(raw[:8], "big") / 1000

    def challenge(self, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """The ``WWW-Authenticate`` headers of a 401 (``Proxy-Authenticate`` of a 407 with
        ``proxy``): one per algorithm, one nonce."""
        nonce = self.nonce(now)
        extra = ", stale=true" if stale else ""
        return [
            (
                self._challenge_header,
                f'Digest realm="{self.realm}", algorithm={algorithm}, qop="auth", '
                f'nonce="{nonce}"{extra}',
            )
            for algorithm in self.algorithms
        ]

    # --- the verdict -------------------------------------------------------------------

    def allowed(self, source: Address) -> bool:
        """Whether ``source`` is in the allow-list."""
        try:
            address = ipaddress.ip_address(source[0].strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.allow)

    def check(self, request: Request, source: Address, now: float) -> AuthResult:
        """The verdict on ``request`` from ``source`` at ``now``."""
        if self.allowed(source):
            return AuthResult("pass", "allowed")
        if not self._credentials:
            return AuthResult("forbidden", "not_allowed")
        values = request.header_values(self._credentials_header)
        if not values:
            return AuthResult("challenge", "no_credentials")
        reason = "bad_header"
        for value in values:
            params = parse_digest(value)
            if params is None:
                continue
            if params.get("realm") != self.realm:
                reason = "wrong_realm"
                continue
            return self._verify(params, request, now)
        return AuthResult("challenge", reason)

    def _verify(self, p: dict[str, str], request: Request, now: float) -> AuthResult:
        for name in ("username", "nonce", "uri", "response"):
            if not p.get(name):
                return AuthResult("challenge", "bad_header")
        algorithm = p.get("algorithm", "MD5")
        algorithm = next((a for a in self.algorithms if a.lower() == algorithm.lower()), "")
        if not algorithm:
            return AuthResult("challenge", "bad_algorithm")
        nc = p.get("nc", "")
        if p.get("qop", "").lower() != "auth" or not _NC.match(nc) or not p.get("cnonce"):
            return AuthResult("challenge", "bad_qop")
        if p["uri"] != request.uri and _target(p["uri"]) != _target(request.uri):
            return AuthResult("challenge", "wrong_uri")
        nonce = p["nonce"]
        age = self._nonce_age(nonce, now)
        if age is None or age < -1.0:
            return AuthResult("challenge", "bad_nonce")
        user = p["username"]
        password = self._credentials.get(user)
        # an unknown user costs the same hash as a known one (no timing oracle on names)
        expected = _digest(
            ALGORITHMS[algorithm],
            user,
            self.realm,
            password if password is not None else secrets.token_hex(16),
            request.method,
            p["uri"],
            nonce,
            nc,
            p["cnonce"],
        )
        right = hmac.compare_digest(expected, p["response"].lower())
        if password is None:
            return AuthResult("challenge", "unknown_user")
        if not right:
            return AuthResult("challenge", "wrong_password")
        if age > self.nonce_ttl:
            return AuthResult("challenge", "stale", stale=True)
        count = int(nc, 16)
        last = self._counts.get(nonce)
        if last is not None and count <= last:
            return AuthResult("challenge", "replay")
        self._counts[nonce] = count
        self._counts.move_to_end(nonce)
        while len(self._counts) > self.max_nonces:
            self._counts.popitem(last=False)
        return AuthResult("pass", "authorized", user=user)


def _target(uri: str) -> tuple[str, str]:
    # scheme and host:port of a SIP URI, without user, parameters and headers
    scheme, _, rest = uri.partition(":")
    hostport = rest.split(";")[0].split("?")[0].rpartition("@")[2]
    return scheme.lower(), hostport.lower()


def _digest(
    hash_name: str,
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
) -> str:
    # RFC 7616 section 3.4.1, qop=auth
    def h(text: str) -> str:
        return hashlib.new(hash_name, text.encode("utf-8")).hexdigest()

    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
