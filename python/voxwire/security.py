"""Authentication of media connections and of Twilio webhooks (pure functions, no I/O).

Token authentication
--------------------
:class:`TokenAuth` accepts a media connection when it presents a valid token in the
query string (``?token=...``), in a header (``Authorization: Bearer ...`` or
``X-Voxwire-Token``), or, for providers that can only pass values inside the stream, as
a custom parameter of the start message (Twilio ``<Parameter name="token" .../>``,
Telnyx ``custom_parameters``, ...). A token is valid when it equals the shared token, or
when it is a per-call token signed by one of the keys of a :class:`CallTokens`. Every
comparison is constant-time (:func:`hmac.compare_digest`). A request that presents a
token which is not valid is refused, even where the start message could still carry
one; a request that presents none may still authenticate in the start message (see
:attr:`TokenAuth.deferred`).

Signed per-call tokens
----------------------
:meth:`CallTokens.mint` makes ``vx1.<key id>.<claims>.<mac>``: the claims are the
base64url (unpadded) of the compact JSON object ``{"call": ..., "iat": ..., "exp": ...,
"jti": ...}`` (the call it is for, issue and expiry times in whole seconds since the
epoch, a random 128-bit id in hex), the mac the base64url of HMAC-SHA256, keyed by the
key named by the key id, of the text before the last dot. :meth:`CallTokens.verify`
checks the mac before it reads the claims, then refuses a token that expired (more than
``max_skew`` seconds ago), was issued more than ``max_skew`` seconds in the future, lives
longer than ``max_ttl``, or was used before (its ``jti`` is remembered until it expires:
a token opens one connection; :mod:`voxwire.used_tokens` says where it is remembered, in
the process or in a file the workers of one host share). Keys rotate by key id: mint with
the newest, verify with every key still listed.

Twilio request signatures
-------------------------
:func:`validate_twilio_signature` checks the ``X-Twilio-Signature`` header of the
webhook that returns the ``<Connect><Stream>`` TwiML, per
https://www.twilio.com/docs/usage/security#validating-requests: take the full URL Twilio
requested (with its query string); for a form POST append every parameter name followed
by its value, names sorted alphabetically (a repeated name contributes each of its
values in order); sign the UTF-8 string with HMAC-SHA1 keyed by the account's auth token;
base64 the digest and compare. For JSON bodies Twilio adds a ``bodySHA256`` query
parameter, the hex SHA-256 of the body, and signs the URL alone;
:func:`validate_twilio_signature` checks that hash when ``body`` is given. Because proxies
may add or drop the default port, the URL is also tried with and without ``:443`` /
``:80``, as Twilio's helper libraries do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

from voxwire.protocols.events import CallStarted
from voxwire.used_tokens import MemoryUsedTokens, UsedTokens

__all__ = [
    "CallTokens",
    "TokenAuth",
    "TokenClaims",
    "TokenError",
    "parse_keys",
    "redact_digits",
    "twilio_signature",
    "validate_twilio_signature",
]


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class TokenError(ValueError):
    """A token that is not accepted; the message says why (never the token itself)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified per-call token says: the call it is for, and its lifetime."""

    call: str
    issued_at: int
    expires_at: int
    key_id: str
    token_id: str


_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_PREFIX = "vx1"
#: the longest token read at all (a minted token is about 200 characters)
MAX_TOKEN_CHARS = 1024
#: the shortest key accepted, in bytes
MIN_KEY_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64 = re.compile(r"[A-Za-z0-9_-]+")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed token") from None


def parse_keys(text: str) -> dict[str, bytes]:
    """Read a key set: ``ID:SECRET`` entries, one a line (or separated by commas), the
    first the one to mint with; blank lines and ``#`` comments are skipped.

    ``ID`` is 1-32 of ``A-Za-z0-9_-``; ``SECRET`` is the key's text, at least
    :data:`MIN_KEY_BYTES` bytes (``python -c "import secrets; print(secrets.token_urlsafe(32))"``
    makes one). Raises :class:`ValueError` naming the bad entry by position, never its
    secret.
    """
    keys: dict[str, bytes] = {}
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    for n, entry in enumerate((e for e in entries if e and not e.startswith("#")), 1):
        key_id, sep, secret = entry.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise ValueError(
                f"key entry {n}: expected ID:SECRET with an ID of 1-32 letters, digits, '_' or '-'"
            )
        raw = secret.strip().encode("utf-8")
        if len(raw) < MIN_KEY_BYTES:
            raise ValueError(
                f"key {key_id!r}: the secret has {len(raw)} bytes, at least "
                f"{MIN_KEY_BYTES} are needed"
            )
        if key_id in keys:
            raise ValueError(f"key {key_id!r} is listed twice")
        keys[key_id] = raw
    if not keys:
        raise ValueError("no key in the key set")
    return keys


class CallTokens:
    """Mint and verify signed, expiring, single-use per-call tokens (module docstring).

    ``keys`` maps key ids to secrets, the first (or ``current``) used to mint; the others
    are still accepted (rotation: add the new key first, drop the old once its tokens
    have expired). ``clock`` gives the wall-clock time in seconds since the epoch.
    ``used`` remembers the used tokens (:mod:`voxwire.used_tokens`; by default this
    process's memory, bounded by ``max_used``: when it is full of tokens that have not
    expired yet, new tokens are refused until some expire, it fails closed).

    >>> tokens = CallTokens({"k2": b"0123456789abcdef"}, clock=lambda: 1000.0)
    >>> token = tokens.mint("CA42", ttl=60)
    >>> tokens.verify(token).call
    'CA42'
    >>> tokens.verify(token)
    Traceback (most recent call last):
    ...
    voxwire.security.TokenError: token already used
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        current: str | None = None,
        max_skew: float = 30.0,
        max_ttl: float = 24 * 3600.0,
        max_used: int = 100_000,
        used: UsedTokens | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("CallTokens needs at least one key")
        for key_id, secret in keys.items():
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"key id {key_id!r}: 1-32 of A-Za-z0-9_- expected")
            if len(secret) < MIN_KEY_BYTES:
                raise ValueError(f"key {key_id!r}: at least {MIN_KEY_BYTES} bytes expected")
        if current is not None and current not in keys:
            raise ValueError(f"current key {current!r} is not in the key set")
        if max_skew < 0 or max_ttl <= 0 or max_used < 1:
            raise ValueError("max_skew >= 0, max_ttl > 0 and max_used >= 1 expected")
        self._keys = dict(keys)
        self.current = current if current is not None else next(iter(keys))
        self.max_skew = max_skew
        self.max_ttl = max_ttl
        self.max_used = max_used
        self.clock = clock
        self.used: UsedTokens = MemoryUsedTokens(max_used) if used is None else used

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the keys accepted."""
        return tuple(self._keys)

    def _mac(self, key_id: str, signed: str) -> str:
        digest = hmac.new(self._keys[key_id], signed.encode("ascii"), hashlib.sha256).digest()
        return _b64(digest)

    def mint(self, call: str, ttl: float, *, key_id: str | None = None) -> str:
        """A token for ``call`` valid for ``ttl`` seconds from now."""
        if not call or len(call) > 256:
            raise ValueError("the call id must have 1-256 characters")
        if not 0 < ttl <= self.max_ttl:
            raise ValueError(f"ttl must be in (0, {self.max_ttl:g}] seconds, got {ttl!r}")
        key_id = self.current if key_id is None else key_id
        if key_id not in self._keys:
            raise ValueError(f"unknown key id {key_id!r}")
        now = int(self.clock())
        claims = {"call": call, "iat": now, "exp": now + int(ttl), "jti": secrets.token_hex(16)}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        signed = f"{_PREFIX}.{key_id}.{body}"
        return f"{signed}.{self._mac(key_id, signed)}"

    def looks_signed(self, token: str) -> bool:
        """Whether ``token`` has the shape of a signed token (not whether it is valid)."""
        return token.startswith(_PREFIX + ".")

    def verify(self, token: str, *, consume: bool = True) -> TokenClaims:
        """The claims of a valid token; raise :class:`TokenError` saying why it is not.

        ``consume`` (the default) records the token as used: a second verification of
        it fails with ``"token already used"``.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenError("malformed token")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _PREFIX:
            raise TokenError("malformed token")
        _, key_id, body, mac = parts
        if not (_B64.fullmatch(body) and _B64.fullmatch(mac)):
            raise TokenError("malformed token")
        if key_id not in self._keys:
            raise TokenError("token signed with an unknown key")
        if not _equal(self._mac(key_id, f"{_PREFIX}.{key_id}.{body}"), mac):
            raise TokenError("bad token signature")
        try:
            claims = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            raise TokenError("malformed token") from None
        if not isinstance(claims, dict):
            raise TokenError("malformed token")
        call, iat, exp, jti = (claims.get(k) for k in ("call", "iat", "exp", "jti"))
        if not (
            isinstance(call, str) and isinstance(jti, str) and type(iat) is int and type(exp) is int
        ):
            raise TokenError("malformed token")
        now = self.clock()
        if now > exp + self.max_skew:
            raise TokenError("token expired")
        if iat > now + self.max_skew:
            raise TokenError("token issued in the future (clock skew)")
        if exp - iat > self.max_ttl:
            raise TokenError("token lives longer than max_ttl")
        if consume:
            self.used.claim(jti, exp + self.max_skew, now)
        return TokenClaims(call, iat, exp, key_id, jti)


@dataclass(frozen=True, slots=True)
class Credential:
    """The outcome of one token check: ``presented`` whether a token was shown at all,
    ``ok`` whether it is valid, ``reason`` why not, ``claims`` a signed token's claims."""

    presented: bool
    ok: bool
    reason: str = ""
    claims: TokenClaims | None = None


@dataclass(frozen=True)
class TokenAuth:
    """Token authentication of media connections; see the module docstring.

    ``token`` is a shared token, ``tokens`` a :class:`CallTokens` for signed per-call
    tokens; give either or both. ``query_param``, ``header`` and ``custom_parameter``
    name where the token may be presented; set one to ``None`` to disable that place.
    ``Authorization: Bearer`` is always accepted when ``header`` is set.
    """

    token: str | None = None
    query_param: str | None = "token"
    header: str | None = "x-voxwire-token"
    custom_parameter: str | None = "token"
    tokens: CallTokens | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.token and self.tokens is None:
            raise ValueError("TokenAuth needs a non-empty token or a CallTokens")

    def _candidates(self, headers: Mapping[str, str], query: Mapping[str, str]) -> list[str]:
        lowered = {k.lower(): v for k, v in headers.items()}
        candidates: list[str] = []
        if self.query_param and self.query_param in query:
            candidates.append(query[self.query_param])
        if self.header:
            if self.header.lower() in lowered:
                candidates.append(lowered[self.header.lower()])
            auth = lowered.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                candidates.append(auth[7:].strip())
        return candidates

    def check(self, candidates: Iterable[str]) -> Credential:
        """Check the tokens a request presented (any one valid is enough)."""
        shown = list(candidates)
        if not shown:
            return Credential(presented=False, ok=False, reason="missing token")
        reason = "wrong token"
        for candidate in shown:
            if self.token is not None and _equal(candidate, self.token):
                return Credential(presented=True, ok=True)
            if self.tokens is not None and self.tokens.looks_signed(candidate):
                try:
                    claims = self.tokens.verify(candidate)
                except TokenError as exc:
                    reason = str(exc)
                    continue
                return Credential(presented=True, ok=True, claims=claims)
        return Credential(presented=True, ok=False, reason=reason)

    def check_credential(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Credential:
        """Check an upgrade request's headers (names in any case) and query parameters."""
        return self.check(self._candidates(headers, query))

    def check_request(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """True if the upgrade request carries a valid token (header names case-insensitive)."""
        return self.check_credential(headers, query).ok

    @property
    def deferred(self) -> bool:
        """Whether a request without the token may still authenticate in the start message."""
        return self.custom_parameter is not None

    def check_started(self, started: CallStarted) -> Credential:
        """Check the token in the start message's custom parameters."""
        if self.custom_parameter is None:
            return Credential(presented=False, ok=False, reason="missing token")
        value = started.custom_parameters.get(self.custom_parameter)
        return self.check([] if value is None else [value])

    def check_start(self, started: CallStarted) -> bool:
        """True if the start message's custom parameters carry a valid token."""
        return self.check_started(started).ok


_DIGIT_WORDS = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple)"
_DIGIT = rf"(?:\d|\b{_DIGIT_WORDS}\b)"
# four or more digits, written or spoken, with spaces, dashes, dots or commas between
_DIGIT_RUN = re.compile(rf"{_DIGIT}(?:[\s.,()+-]*{_DIGIT}){{3,}}", re.IGNORECASE)


def redact_digits(text: str) -> str:
    """``text`` with every run of four or more digits (written or spoken, with spaces,
    dashes, dots or commas between them) replaced by ``[digits]``: card, account and
    phone numbers stay out of logs.

    >>> redact_digits("my card is 4111 1111 1111 1111, expiry 12/29")
    'my card is [digits], expiry 12/29'
    >>> redact_digits("account four five six seven eight, at 3 pm")
    'account [digits], at 3 pm'
    """
    return _DIGIT_RUN.sub("[digits]", text)


def _pairs(params: Mapping[str, str | Iterable[str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, str):
            out.append((key, value))
        else:
            out.extend((key, v) for v in value)
    return out


def twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str | Iterable[str]] | None = None
) -> str:
    """The ``X-Twilio-Signature`` Twilio computes for ``url`` and form ``params``."""
    data = url + "".join(k + v for k, v in _pairs(params or {}))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if default is None or not parts.hostname:
        return variants
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    if parts.port is None:
        with_port = parts._replace(netloc=f"{prefix}{host}:{default}")
        variants.append(urlunsplit(with_port))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    return variants


def validate_twilio_signature(
    auth_token: str,
    url: str,
    params: Mapping[str, str | Iterable[str]] | None,
    signature: str,
    *,
    body: bytes | None = None,
) -> bool:
    """Check an ``X-Twilio-Signature`` (constant-time); see the module docstring.

    ``params`` are the decoded form fields of a POST (``None`` or ``{}`` for a GET, whose
    parameters are in ``url``). ``body`` is the raw body of a JSON request signed with
    ``bodySHA256``.
    """
    if not auth_token or not signature:
        return False
    if body is not None:
        query = parse_qs(urlsplit(url).query)
        expected = query.get("bodySHA256", [""])[0]
        digest = hashlib.sha256(body).hexdigest()
        if not expected or not _equal(digest, expected.lower()):
            return False
        params = None
    variants = _url_variants(url)
    results = [_equal(twilio_signature(auth_token, u, params), signature) for u in variants]
    return any(results)
