"""Inbound digest authentication and the allow-list: the authenticator alone, and the
server challenging a scripted caller on a virtual clock. The caller's digest is
computed here, independently of voxwire.sip.auth, from RFC 7616 section 3.4.1."""

from __future__ import annotations

import hashlib

import pytest

from tests.sip.uac import CALLER, SERVER, Caller, responses, statuses
from voxwire.sip.auth import Authenticator, load_credentials, parse_digest
from voxwire.sip.message import Response
from voxwire.sip.uas import IncomingCall, SipServer

USERS = {"trunk": "Circle of Life"}


def digest_response(
    algorithm: str, user: str, realm: str, password: str, method: str, uri: str, **p: str
) -> str:
    h = {"MD5": "md5", "SHA-256": "sha256"}.get(algorithm, "sha512")

    def hash_(text: str) -> str:
        return hashlib.new(h, text.encode()).hexdigest()

    ha1 = hash_(f"{user}:{realm}:{password}")
    ha2 = hash_(f"{method}:{uri}")
    return hash_(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")


def test_the_digest_is_rfc_7616s_example() -> None:
    # RFC 7616 section 3.9.1 (an HTTP request; the hash is the same for SIP)
    p = {
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "nc": "00000001",
        "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    }
    args = ("Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html")
    assert digest_response("MD5", *args, **p) == "8ca523f5e9506fed4657c9700eebdbec"
    assert (
        digest_response("SHA-256", *args, **p)
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )
    from voxwire.sip.auth import _digest

    for algorithm, name in (("MD5", "md5"), ("SHA-256", "sha256")):
        assert _digest(name, *args[:3], *args[3:], p["nonce"], p["nc"], p["cnonce"]) == (
            digest_response(algorithm, *args, **p)
        )


def challenge_params(response: Response) -> list[dict[str, str]]:
    out = []
    for value in response.header_values("WWW-Authenticate"):
        params = parse_digest(value)
        assert params is not None, value
        out.append(params)
    return out


def authorization(
    params: dict[str, str],
    *,
    password: str = USERS["trunk"],
    user: str = "trunk",
    uri: str = f"sip:bot@{SERVER[0]}",
    nc: str = "00000001",
    method: str = "INVITE",
) -> tuple[str, str]:
    algorithm = params["algorithm"]
    p = {"nonce": params["nonce"], "nc": nc, "cnonce": "0a4f113b"}
    response = digest_response(algorithm, user, params["realm"], password, method, uri, **p)
    return (
        "Authorization",
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, nc={nc}, '
        f'cnonce="{p["cnonce"]}"',
    )


def server(auth: Authenticator) -> SipServer:
    return SipServer(SERVER[0], SERVER[1], auth=auth)


def challenged(s: SipServer, caller: Caller, now: float) -> list[dict[str, str]]:
    s.receive(caller.invite(), CALLER, now)
    (response,) = responses(s.datagrams())
    assert response.status == 401
    assert s.events() == []
    # the ACK of the 401 ends its transaction (no more Timer G)
    s.receive(caller.ack(branch=caller.branches["INVITE"], to_tag=response.to.tag), CALLER, now)
    return challenge_params(response)


def test_an_invite_is_challenged_then_taken_with_either_algorithm() -> None:
    s = server(Authenticator(USERS, realm="bot.example", secret=b"s" * 32))
    for i, algorithm in enumerate(("SHA-256", "MD5")):
        caller = Caller(call_id=f"call-{i}")
        offered = challenged(s, caller, float(i))
        assert [p["algorithm"] for p in offered] == ["SHA-256", "MD5"]  # RFC 8760 2.4
        assert all(p["qop"] == "auth" and p["realm"] == "bot.example" for p in offered)
        assert offered[0]["nonce"] == offered[1]["nonce"]
        assert "stale" not in offered[0]
        (chosen,) = [p for p in offered if p["algorithm"] == algorithm]
        caller.cseq = 2
        s.receive(caller.invite(extra=(authorization(chosen),)), CALLER, float(i) + 0.1)
        assert statuses(s.datagrams()) == [100]
        (call,) = s.events()
        assert isinstance(call, IncomingCall)
        assert call.user == "trunk"
    assert s.counters["auth_no_credentials"] == 2
    assert s.counters["auth_authorized"] == 2
    assert s.counters["response_401"] == 2
    assert s.counters["retransmitted_401"] == 0
    assert s.calls == 2


def refused(s: SipServer, caller: Caller, header: tuple[str, str], now: float) -> Response:
    caller.cseq += 1
    s.receive(caller.invite(extra=(header,)), CALLER, now)
    (response,) = responses(s.datagrams())
    assert s.events() == []
    return response


def test_wrong_credentials_are_challenged_again() -> None:
    s = server(Authenticator(USERS, secret=b"s" * 32))
    caller = Caller()
    (sha, md5) = challenged(s, caller, 0.0)
    cases = [
        (authorization(md5, password="guess"), "wrong_password"),
        (authorization(sha, user="admin"), "unknown_user"),
        (authorization(sha, uri="sip:other@192.0.2.200"), "wrong_uri"),
        (authorization({**sha, "realm": "elsewhere"}), "wrong_realm"),
        (authorization({**sha, "nonce": sha["nonce"][:-2] + "AA"}), "bad_nonce"),
        (authorization({**sha, "nonce": "made-up"}), "bad_nonce"),
        (authorization(sha, nc="1"), "bad_qop"),
        (authorization({**sha, "algorithm": "SHA-512-256"}), "bad_algorithm"),
        (("Authorization", "Basic dHJ1bms6cHc="), "bad_header"),
        (("Authorization", 'Digest username="trunk", realm="voxwire"'), "bad_header"),
        (("Authorization", 'Digest realm="voxwire", realm="voxwire"'), "bad_header"),
    ]
    for header, reason in cases:
        before = s.counters[f"auth_{reason}"]
        response = refused(s, caller, header, 1.0)
        assert response.status == 401, reason
        assert s.counters[f"auth_{reason}"] == before + 1, (reason, s.counters)
        assert all("stale" not in p for p in challenge_params(response))
    # without qop (RFC 2069 style) is refused too: the nonce count is what stops a replay
    old_style = authorization(sha)[1].replace(", qop=auth", "")
    assert refused(s, caller, ("Authorization", old_style), 1.0).status == 401
    assert s.counters["auth_bad_qop"] == 2
    assert s.calls == 0


def test_an_expired_nonce_with_the_right_digest_is_challenged_as_stale() -> None:
    s = server(Authenticator(USERS, nonce_ttl=30.0, secret=b"s" * 32))
    caller = Caller()
    (sha, _) = challenged(s, caller, 0.0)
    response = refused(s, caller, authorization(sha), 30.5)
    assert response.status == 401
    fresh = challenge_params(response)
    assert [p["stale"] for p in fresh] == ["true", "true"]
    assert fresh[0]["nonce"] != sha["nonce"]
    assert s.counters["auth_stale"] == 1
    # a wrong digest with an expired nonce is not stale: the password is wrong
    response = refused(s, caller, authorization(sha, password="guess"), 31.0)
    assert all("stale" not in p for p in challenge_params(response))
    # the new nonce works
    caller.cseq += 1
    s.receive(caller.invite(extra=(authorization(fresh[0]),)), CALLER, 31.0)
    assert statuses(s.datagrams()) == [100]


def test_a_replayed_authorization_is_refused_and_the_count_must_grow() -> None:
    s = server(Authenticator(USERS, secret=b"s" * 32))
    first = Caller(call_id="a")
    (sha, _) = challenged(s, first, 0.0)
    header = authorization(sha, nc="00000002")
    first.cseq = 2
    s.receive(first.invite(extra=(header,)), CALLER, 0.1)
    assert statuses(s.datagrams()) == [100]
    s.events()
    # the same Authorization in a new call (a captured INVITE sent again)
    assert refused(s, Caller(call_id="b"), header, 0.2).status == 401
    assert refused(s, Caller(call_id="c"), authorization(sha, nc="00000001"), 0.3).status == 401
    assert s.counters["auth_replay"] == 2
    # the next count of the same nonce is good
    s.receive(Caller(call_id="d").invite(extra=(authorization(sha, nc="00000003"),)), CALLER, 0.4)
    assert statuses(s.datagrams()) == [100]


def test_a_nonce_of_another_secret_is_not_ours() -> None:
    ours = server(Authenticator(USERS, secret=b"a" * 32))
    theirs = server(Authenticator(USERS, secret=b"b" * 32))
    caller = Caller()
    (sha, _) = challenged(theirs, caller, 0.0)
    assert refused(ours, caller, authorization(sha), 0.1).status == 401
    assert ours.counters["auth_bad_nonce"] == 1


def test_the_allow_list_passes_its_sources_and_alone_forbids_the_rest() -> None:
    both = server(Authenticator(USERS, allow=["192.0.2.0/28"]))
    both.receive(Caller().invite(), CALLER, 0.0)  # 192.0.2.9
    assert statuses(both.datagrams()) == [100]
    (call,) = both.events()
    assert isinstance(call, IncomingCall)
    assert call.user == ""
    both.receive(Caller(call_id="x").invite(), ("198.51.100.7", 5060), 0.0)
    assert statuses(both.datagrams()) == [401]
    only = server(Authenticator(allow=["192.0.2.9", "2001:db8::/32"]))
    only.receive(Caller().invite(), CALLER, 0.0)
    assert statuses(only.datagrams()) == [100]
    only.receive(Caller(call_id="y").invite(), ("198.51.100.7", 5060), 0.0)
    assert statuses(only.datagrams()) == [403]
    # OPTIONS (the balancer's probe) and requests in a dialog are not challenged
    only.receive(Caller(call_id="z").request("OPTIONS"), ("198.51.100.7", 5060), 0.0)
    assert statuses(only.datagrams()) == [200]
    assert only.counters["auth_allowed"] == 1
    assert only.counters["auth_not_allowed"] == 1


def test_configuration_errors_and_secrets_kept_out_of_messages() -> None:
    assert load_credentials("# trunks\ntrunk:pa:ss\n\n  pbx : x y\n") == {
        "trunk": "pa:ss",
        "pbx": " x y",
    }
    for text in ("nocolon", ":onlypass", "user:", 'q"uote:pw', "a:s3cr3t\na:s3cr3t"):
        with pytest.raises(ValueError, match="credentials line") as e:
            load_credentials(text)
        assert "pw" not in str(e.value)
        assert "s3cr3t" not in str(e.value)
        assert "onlypass" not in str(e.value)
    with pytest.raises(ValueError, match="needs credentials"):
        Authenticator()
    with pytest.raises(ValueError, match="algorithms must be"):
        Authenticator(USERS, algorithms=("SHA-512",))
    with pytest.raises(ValueError, match="realm"):
        Authenticator(USERS, realm='a"b')
    with pytest.raises(ValueError, match="does not appear to be"):
        Authenticator(allow=["not-a-network"])
    auth = Authenticator(USERS, allow=["192.0.2.0/24"])
    assert "Circle" not in repr(auth)
    assert auth.users == 1


def test_parse_digest() -> None:
    assert parse_digest('Digest a="x, y", b=z,c="q\\"w"') == {"a": "x, y", "b": "z", "c": 'q"w'}
    assert parse_digest("Basic abc") is None
    assert parse_digest('Digest a="unterminated') is None
    assert parse_digest("Digest") == {}


def test_as_a_proxy_the_challenge_is_407_and_only_proxy_authorization_counts() -> None:
    auth = Authenticator(USERS, realm="edge", secret=b"p" * 32, proxy=True)
    assert auth.status == 407
    assert "challenge=407" in repr(auth)
    s = server(auth)
    caller = Caller()
    s.receive(caller.invite(), CALLER, 0.0)
    (response,) = responses(s.datagrams())
    assert (response.status, response.reason) == (407, "Proxy Authentication Required")
    assert response.header_values("WWW-Authenticate") == []
    offered = []
    for value in response.header_values("Proxy-Authenticate"):
        params = parse_digest(value)
        assert params is not None
        offered.append(params)
    assert [p["algorithm"] for p in offered] == ["SHA-256", "MD5"]
    s.receive(caller.ack(branch=caller.branches["INVITE"], to_tag=response.to.tag), CALLER, 0.0)
    name, value = authorization(offered[0])
    # the right digest in the header a UAS reads is not a proxy's credentials
    caller.cseq = 2
    s.receive(caller.invite(extra=((name, value),)), CALLER, 0.1)
    assert statuses(s.datagrams()) == [407]
    assert s.counters["auth_no_credentials"] == 2
    caller.cseq = 3
    s.receive(caller.invite(extra=(("Proxy-Authorization", value),)), CALLER, 0.2)
    assert statuses(s.datagrams()) == [100]
    (call,) = s.events()
    assert isinstance(call, IncomingCall)
    assert call.user == "trunk"
    assert s.counters["response_401"] == 0
    assert s.counters["response_407"] == 2
