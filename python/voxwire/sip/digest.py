"""The client side of SIP digest authentication (RFC 3261 section 22, RFC 7616, RFC 8760).

>>> from voxwire.sip.digest import DigestClient
>>> client = DigestClient("alice", "secret")
>>> name, value = client.authorize(
...     [("WWW-Authenticate", 'Digest realm="pbx", nonce="n1", qop="auth", algorithm=MD5')],
...     "INVITE", "sip:bob@192.0.2.1", cnonce="c0ffee")
>>> name
'Authorization'
>>> 'nc=00000001' in value and 'response="' in value
True

A 401 carries ``WWW-Authenticate`` and is answered with ``Authorization``; a 407 (a proxy)
carries ``Proxy-Authenticate`` and is answered with ``Proxy-Authorization``. Of the
challenges offered, SHA-256 is taken before MD5 (RFC 8760 section 2.4: the first one the
client supports, in the server's order, and voxwire prefers the stronger); ``qop=auth``
when offered (``auth-int`` alone is refused), else the RFC 2069 form without ``cnonce``.
``nc`` counts the requests made with one nonce (RFC 7616 section 3.4). The password never
leaves the object: :func:`repr` names the user only.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from voxwire.sip.auth import parse_digest

__all__ = ["Challenge", "DigestClient", "parse_challenges"]

_HASHES: Final[dict[str, str]] = {"SHA-256": "sha256", "MD5": "md5"}
_PREFERENCE: Final = ("SHA-256", "MD5")
_MAX_NONCES: Final = 64


@dataclass(frozen=True, slots=True)
class Challenge:
    """One digest challenge of a 401/407."""

    realm: str
    nonce: str
    algorithm: str
    qop: bool
    opaque: str | None
    stale: bool


def parse_challenges(values: list[str]) -> list[Challenge]:
    """The digest challenges of ``WWW-Authenticate``/``Proxy-Authenticate`` values that
    voxwire can answer (SHA-256 or MD5, qop ``auth`` or none), in the order given."""
    out: list[Challenge] = []
    for value in values:
        params = parse_digest(value)
        if params is None or "nonce" not in params or "realm" not in params:
            continue
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in _HASHES:
            continue
        qops = [q.strip().lower() for q in params["qop"].split(",")] if "qop" in params else []
        if qops and "auth" not in qops:
            continue  # auth-int only: voxwire does not hash bodies
        out.append(
            Challenge(
                params["realm"],
                params["nonce"],
                algorithm,
                bool(qops),
                params.get("opaque"),
                params.get("stale", "").lower() == "true",
            )
        )
    return out


class DigestClient:
    """Credentials of one user and the nonce counts of the challenges they answered."""

    def __init__(self, user: str, password: str) -> None:
        if not user:
            raise ValueError("DigestClient: the user is empty")
        self.user = user
        self._password = password
        self._counts: OrderedDict[str, int] = OrderedDict()

    def __repr__(self) -> str:  # never the password
        return f"DigestClient(user={self.user!r})"

    def authorize(
        self,
        headers: list[tuple[str, str]],
        method: str,
        uri: str,
        *,
        cnonce: str | None = None,
    ) -> tuple[str, str] | None:
        """The ``(header, value)`` answering the challenges among ``headers`` (a 401's or
        407's), or None when there is none voxwire can answer."""
        for name, answer in (
            ("WWW-Authenticate", "Authorization"),
            ("Proxy-Authenticate", "Proxy-Authorization"),
        ):
            values = [v for n, v in headers if n.lower() == name.lower()]
            challenges = parse_challenges(values)
            if not challenges:
                continue
            challenges.sort(key=lambda c: _PREFERENCE.index(c.algorithm))
            return answer, self._answer(challenges[0], method, uri, cnonce)
        return None

    def _answer(self, c: Challenge, method: str, uri: str, cnonce: str | None) -> str:
        hash_name = _HASHES[c.algorithm]

        def h(text: str) -> str:
            return hashlib.new(hash_name, text.encode("utf-8")).hexdigest()

        ha1 = h(f"{self.user}:{c.realm}:{self._password}")
        ha2 = h(f"{method}:{uri}")
        parts = [
            f'username="{self.user}"',
            f'realm="{c.realm}"',
            f'nonce="{c.nonce}"',
            f'uri="{uri}"',
        ]
        if c.qop:
            count = self._counts.pop(c.nonce, 0) + 1
            self._counts[c.nonce] = count
            while len(self._counts) > _MAX_NONCES:
                self._counts.popitem(last=False)
            nc = f"{count:08x}"
            cn = cnonce or secrets.token_hex(8)
            response = h(f"{ha1}:{c.nonce}:{nc}:{cn}:auth:{ha2}")
            parts += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cn}"']
        else:
            parts.append(f'response="{h(f"{ha1}:{c.nonce}:{ha2}")}"')
        parts.append(f"algorithm={c.algorithm}")
        if c.opaque is not None:
            parts.append(f'opaque="{c.opaque}"')
        return "Digest " + ", ".join(parts)
