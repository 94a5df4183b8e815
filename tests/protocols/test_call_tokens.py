"""Signed per-call tokens: the format checked by an independent signer, expiry, clock
skew, replay, key rotation, tampering and malformed input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxwire.protocols import CallStarted, MediaFormat
from voxwire.security import CallTokens, TokenAuth, TokenError, parse_keys

KEY = b"test-key-not-a-secret-0001"
OLD = b"test-key-not-a-secret-0000"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tokens(clock: Clock, **kw: object) -> CallTokens:
    return CallTokens({"k1": KEY}, clock=clock, **kw)  # type: ignore[arg-type]


def test_the_format_is_hmac_sha256_over_the_text_before_the_mac() -> None:
    clock = Clock()
    token = tokens(clock).mint("CA42", ttl=60)
    prefix, key_id, body, mac = token.split(".")
    assert (prefix, key_id) == ("vx1", "k1")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["call"] == "CA42"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["iat"] == int(clock.now)
    assert len(claims["jti"]) == 32
    digest = hmac.new(KEY, f"vx1.k1.{body}".encode(), hashlib.sha256).digest()
    assert mac == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_a_token_is_accepted_once() -> None:
    clock = Clock()
    minted = tokens(clock)
    token = minted.mint("CA42", ttl=60)
    claims = minted.verify(token)
    assert (claims.call, claims.key_id) == ("CA42", "k1")
    with pytest.raises(TokenError, match=r"^token already used$"):
        minted.verify(token)
    # a second token for the same call is a new token
    assert minted.verify(minted.mint("CA42", ttl=60)).call == "CA42"


def test_expiry_and_clock_skew() -> None:
    clock = Clock()
    minted = tokens(clock, max_skew=5.0)
    token = minted.mint("CA42", ttl=60)
    clock.now += 60 + 5  # expired, but within the skew bound
    assert minted.verify(token, consume=False).call == "CA42"
    clock.now += 1.5
    with pytest.raises(TokenError, match=r"^token expired$"):
        minted.verify(token)
    # a minting clock ahead of ours: accepted within the bound, refused beyond
    ahead = Clock(clock.now + 4)
    assert minted.verify(tokens(ahead).mint("CA1", ttl=60)).call == "CA1"
    ahead.now += 2
    with pytest.raises(TokenError, match="clock skew"):
        minted.verify(tokens(ahead).mint("CA1", ttl=60))


def test_ttl_bounds() -> None:
    minted = tokens(Clock(), max_ttl=300)
    with pytest.raises(ValueError, match="ttl must be in"):
        minted.mint("CA1", ttl=301)
    with pytest.raises(ValueError, match="ttl must be in"):
        minted.mint("CA1", ttl=0)
    longer = CallTokens({"k1": KEY}, clock=minted.clock).mint("CA1", ttl=3600)
    with pytest.raises(TokenError, match="longer than max_ttl"):
        minted.verify(longer)


def test_rotation_by_key_id() -> None:
    clock = Clock()
    old = CallTokens({"k0": OLD}, clock=clock)
    rotated = CallTokens({"k1": KEY, "k0": OLD}, clock=clock)
    assert rotated.current == "k1"
    assert rotated.mint("CA1", ttl=60).split(".")[1] == "k1"
    assert rotated.verify(old.mint("CA1", ttl=60)).key_id == "k0"
    retired = CallTokens({"k1": KEY}, clock=clock)
    with pytest.raises(TokenError, match="unknown key"):
        retired.verify(old.mint("CA1", ttl=60))
    # the same id with another secret is a bad signature
    with pytest.raises(TokenError, match="bad token signature"):
        CallTokens({"k0": KEY}, clock=clock).verify(old.mint("CA1", ttl=60))


def test_tampered_claims_fail_the_signature() -> None:
    clock = Clock()
    minted = tokens(clock)
    prefix, key_id, body, mac = minted.mint("CA42", ttl=60).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for change in ({"call": "CA43"}, {"exp": claims["exp"] + 3600}):
        forged = base64.urlsafe_b64encode(json.dumps({**claims, **change}).encode())
        token = f"{prefix}.{key_id}.{forged.rstrip(b'=').decode()}.{mac}"
        with pytest.raises(TokenError, match="bad token signature"):
            minted.verify(token)


@given(st.text(max_size=300))
def test_any_text_is_a_token_error_never_another_exception(text: str) -> None:
    minted = tokens(Clock())
    for candidate in (text, "vx1." + text, "vx1.k1." + text, f"vx1.k1.{text}.{text}"):
        with pytest.raises(TokenError):
            minted.verify(candidate)


def test_a_signed_body_that_is_not_claims_is_malformed() -> None:
    minted = tokens(Clock())
    for body in (b"[]", b"{}", b'{"call": 1, "iat": 0, "exp": 9, "jti": "x"}', b"\xff"):
        text = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
        mac = hmac.new(KEY, f"vx1.k1.{text}".encode(), hashlib.sha256).digest()
        token = f"vx1.k1.{text}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
        with pytest.raises(TokenError, match=r"^malformed token$"):
            minted.verify(token)
    with pytest.raises(TokenError, match=r"^malformed token$"):
        minted.verify("vx1.k1." + "a" * 2000 + ".b")


def test_the_memory_of_used_tokens_is_bounded_and_fails_closed() -> None:
    clock = Clock()
    minted = tokens(clock, max_used=3, max_skew=0.0)
    for _ in range(3):
        minted.verify(minted.mint("CA1", ttl=10))
    with pytest.raises(TokenError, match="too many live tokens"):
        minted.verify(minted.mint("CA1", ttl=10))
    clock.now += 11  # the used ones expired: forgotten, room again
    minted.verify(minted.mint("CA1", ttl=10))


def test_parse_keys_reads_a_key_set_and_never_echoes_a_secret() -> None:
    keys = parse_keys("# rotated 2026-11\nk2:test-key-not-a-secret-0002\n\nk1: " + KEY.decode())
    assert keys == {"k2": b"test-key-not-a-secret-0002", "k1": KEY}
    assert list(parse_keys("a:0123456789abcdef,b:0123456789abcdeg")) == ["a", "b"]
    for text, message in (
        ("", "no key"),
        ("nocolon-secret-0123456789", "key entry 1: expected ID:SECRET"),
        ("k1:tooshortsecret", "the secret has 14 bytes"),
        ("k 1:0123456789abcdef", "key entry 1"),
        ("k1:0123456789abcdef\nk1:0123456789abcdeX", "listed twice"),
    ):
        with pytest.raises(ValueError, match=message) as info:
            parse_keys(text)
        assert "0123456789abcde" not in str(info.value)
        assert "tooshortsecret" not in str(info.value)


def started(custom: dict[str, str]) -> CallStarted:
    return CallStarted("MZ1", "CA1", MediaFormat("audio/x-mulaw", 8000), custom_parameters=custom)


def test_token_auth_accepts_shared_and_signed_tokens_and_says_why_not() -> None:
    clock = Clock()
    minted = tokens(clock)
    auth = TokenAuth("s3cret", tokens=minted)
    assert auth.check_credential({}, {"token": "s3cret"}).ok
    signed = minted.mint("CA42", ttl=60)
    credential = auth.check_credential({"Authorization": f"Bearer {signed}"}, {})
    assert credential.ok
    assert credential.claims is not None
    assert credential.claims.call == "CA42"
    again = auth.check_credential({}, {"token": signed})
    assert (again.presented, again.ok, again.reason) == (True, False, "token already used")
    assert auth.check_credential({}, {}).reason == "missing token"
    assert auth.check_credential({}, {"token": "nope"}).reason == "wrong token"
    only_signed = TokenAuth(tokens=minted)
    assert not only_signed.check_credential({}, {"token": "s3cret"}).ok
    start = only_signed.check_started(started({"token": minted.mint("CA1", ttl=60)}))
    assert start.ok
    assert start.claims is not None
    with pytest.raises(ValueError, match="needs a non-empty token or a CallTokens"):
        TokenAuth()
