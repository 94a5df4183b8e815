"""Authentication of media connections and of Twilio webhooks (pure functions, no I/O).

Token authentication
--------------------
:class:`TokenAuth` accepts a media connection when it presents the shared token in the
query string (``?token=...``), in a header (``Authorization: Bearer ...`` or
``X-Voxwire-Token``), or, for providers that can only pass values inside the stream, as
a custom parameter of the start message (Twilio ``<Parameter name="token" .../>``,
Telnyx ``custom_parameters``, ...). Every comparison is constant-time
(:func:`hmac.compare_digest`).

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
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from voxwire.protocols.events import CallStarted

__all__ = ["TokenAuth", "twilio_signature", "validate_twilio_signature"]


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


@dataclass(frozen=True)
class TokenAuth:
    """Shared-token authentication of media connections; see the module docstring.

    ``query_param``, ``header`` and ``custom_parameter`` name where the token may be
    presented; set one to ``None`` to disable that place. ``Authorization: Bearer`` is
    always accepted when ``header`` is set.
    """

    token: str
    query_param: str | None = "token"
    header: str | None = "x-voxwire-token"
    custom_parameter: str | None = "token"

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("TokenAuth needs a non-empty token")

    def check_request(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """True if the upgrade request carries the token (header names case-insensitive)."""
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
        # compare against every candidate so the time does not depend on which matched
        results = [_equal(c, self.token) for c in candidates]
        return any(results)

    @property
    def deferred(self) -> bool:
        """Whether a request without the token may still authenticate in the start message."""
        return self.custom_parameter is not None

    def check_start(self, started: CallStarted) -> bool:
        """True if the start message's custom parameters carry the token."""
        if self.custom_parameter is None:
            return False
        value = started.custom_parameters.get(self.custom_parameter)
        return value is not None and _equal(value, self.token)


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
