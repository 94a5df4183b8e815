"""The sans-I/O SIP client (voxwire.sip.uac) and client digest (voxwire.sip.digest), with
the peer scripted: every timer by ``now``, every message checked."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.sip.auth import Authenticator, parse_digest
from voxwire.sip.digest import DigestClient, parse_challenges
from voxwire.sip.message import Request, Response, parse_message
from voxwire.sip.uac import (
    CallAnswered,
    CallEnded,
    CallFailed,
    CallProgress,
    Registered,
    RegistrationFailed,
    SipClient,
    TransferProgress,
)

ME = ("192.0.2.1", 5070)
PEER = ("192.0.2.9", 5060)
TARGET = "sip:bob@192.0.2.9"
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def sent(client: SipClient) -> list[Request | Response]:
    out = []
    for wire, _dest in client.datagrams():
        message = parse_message(wire)
        out.append(message)
    return out


def reply(
    request: Request,
    status: int,
    *,
    tag: str = "callee",
    body: bytes = b"",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    to = request.header("To") or ""
    if "tag=" not in to and status > 100:
        to += f";tag={tag}"
    headers = [
        ("Via", request.header("Via") or ""),
        ("From", request.header("From") or ""),
        ("To", to),
        ("Call-ID", request.call_id),
        ("CSeq", request.header("CSeq") or ""),
        *extra,
    ]
    if status // 100 == 2 and request.method == "INVITE":
        headers.append(("Contact", "<sip:bob@192.0.2.9:5060>"))
    return Response(status, "X", headers, body).encode()


def invite(client: SipClient) -> tuple[str, Request]:
    handle = client.invite(TARGET, SDP, 0.0)
    [request] = sent(client)
    assert isinstance(request, Request)
    assert request.method == "INVITE"
    return handle, request


def in_dialog(
    method: str,
    call: Request,
    cseq: int,
    *,
    body: bytes = b"",
    extra: tuple[tuple[str, str], ...] = (),
    branch: str = "z9hG4bKpeer1",
) -> bytes:
    headers = [
        ("Via", f"SIP/2.0/UDP 192.0.2.9:5060;branch={branch}"),
        ("From", "<sip:bob@192.0.2.9>;tag=callee"),
        ("To", call.header("From") or ""),
        ("Call-ID", call.call_id),
        ("CSeq", f"{cseq} {method}"),
        *extra,
    ]
    return Request(method, "sip:voxwire@192.0.2.1:5070", headers, body).encode()


def test_timer_a_doubles_and_timer_b_fails_the_call() -> None:
    client = SipClient(*ME, t1=0.5)
    handle, _ = invite(client)
    times = []
    now = 0.0
    while client.get_timer() is not None:
        now = client.get_timer() or now
        client.handle_timer(now)
        if any(isinstance(m, Request) for m in sent(client)):
            times.append(now)
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # T1 doubling, no cap (17.1.1.2)
    assert client.events() == [CallFailed(handle, 408, "no response")]
    assert client.calls == 0
    assert client.transactions == 0


def test_a_provisional_stops_retransmission_and_a_2xx_is_acked_again_per_retransmission() -> None:
    client = SipClient(*ME)
    handle, request = invite(client)
    client.receive(reply(request, 180), PEER, 0.1)
    assert client.events() == [CallProgress(handle, 180)]
    client.handle_timer(0.6)
    assert sent(client) == []
    ok = reply(request, 200, body=b"v=0\r\n")
    client.receive(ok, PEER, 1.0)
    [ack] = sent(client)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == "sip:bob@192.0.2.9:5060"  # the 2xx's Contact
    assert ack.cseq == (request.cseq[0], "ACK")
    assert ack.vias[0].branch != request.vias[0].branch  # its own transaction
    [answered] = client.events()
    assert isinstance(answered, CallAnswered)
    assert answered.sdp == b"v=0\r\n"
    client.receive(ok, PEER, 1.5)
    [again] = sent(client)
    assert isinstance(again, Request)
    assert again.method == "ACK"
    client.hangup(handle, 2.0)
    [bye] = sent(client)
    assert isinstance(bye, Request)
    assert bye.method == "BYE"
    assert bye.cseq[0] == request.cseq[0] + 1
    assert bye.to.tag == "callee"


def test_a_non_2xx_is_acked_in_its_transaction_and_retransmissions_reacked() -> None:
    client = SipClient(*ME)
    handle, request = invite(client)
    busy = reply(request, 486)
    client.receive(busy, PEER, 0.1)
    [ack] = sent(client)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.vias[0].branch == request.vias[0].branch
    assert ack.to.tag == "callee"
    assert client.events() == [CallFailed(handle, 486, "X")]
    client.receive(busy, PEER, 1.0)
    assert [m.method for m in sent(client) if isinstance(m, Request)] == ["ACK"]
    client.handle_timer(40.0)  # Timer D
    assert client.transactions == 0


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_a_401_is_answered_with_credentials_the_server_side_accepts(algorithm: str) -> None:
    server = Authenticator({"alice": "pw"}, realm="pbx", algorithms=(algorithm,))
    client = SipClient(*ME, user="alice", password="pw")
    handle, request = invite(client)
    challenge = tuple(server.challenge(0.0))
    client.receive(reply(request, 401, extra=challenge), PEER, 0.1)
    ack, again = sent(client)
    assert isinstance(ack, Request)
    assert isinstance(again, Request)
    assert ack.method == "ACK"
    assert again.method == "INVITE"
    assert again.cseq[0] == request.cseq[0] + 1
    assert again.call_id == request.call_id
    params = parse_digest(again.header("Authorization") or "")
    assert params is not None
    assert params["algorithm"] == algorithm
    assert params["nc"] == "00000001"
    assert server.check(again, PEER, 0.2).outcome == "pass"
    # the same challenge again (not stale): the credentials were wrong, the call fails
    client.receive(reply(again, 401, extra=challenge), PEER, 0.3)
    assert [m.method for m in sent(client) if isinstance(m, Request)] == ["ACK"]
    assert client.events() == [CallFailed(handle, 401, "X")]


def test_sha256_is_chosen_over_md5_and_nc_counts_per_nonce() -> None:
    digest = DigestClient("alice", "pw")
    headers = [
        ("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth", algorithm=MD5'),
        ("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256'),
    ]
    first = digest.authorize(headers, "REGISTER", "sip:pbx", cnonce="c1")
    second = digest.authorize(headers, "REGISTER", "sip:pbx", cnonce="c1")
    assert first is not None
    assert second is not None
    p1, p2 = parse_digest(first[1]), parse_digest(second[1])
    assert p1 is not None
    assert p2 is not None
    assert (p1["algorithm"], p1["nc"], p2["nc"]) == ("SHA-256", "00000001", "00000002")
    ha1 = hashlib.sha256(b"alice:r:pw").hexdigest()
    ha2 = hashlib.sha256(b"REGISTER:sip:pbx").hexdigest()
    expected = hashlib.sha256(f"{ha1}:n:00000002:c1:auth:{ha2}".encode()).hexdigest()
    assert p2["response"] == expected
    assert "pw" not in repr(digest)


def test_rfc2069_challenge_without_qop_and_auth_int_only_is_refused() -> None:
    digest = DigestClient("alice", "pw")
    old = digest.authorize([("WWW-Authenticate", 'Digest realm="r", nonce="n"')], "INVITE", "sip:x")
    assert old is not None
    params = parse_digest(old[1])
    assert params is not None
    ha1 = hashlib.md5(b"alice:r:pw").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:x").hexdigest()
    assert params["response"] == hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert "nc" not in params
    assert parse_challenges(['Digest realm="r", nonce="n", qop="auth-int"']) == []
    assert parse_challenges(['Digest realm="r", nonce="n", algorithm=SHA-512-256']) == []
    assert parse_challenges(["Basic realm=r"]) == []


def test_a_407_is_answered_with_proxy_authorization() -> None:
    client = SipClient(*ME, user="alice", password="pw")
    _, request = invite(client)
    challenge = (
        "Proxy-Authenticate",
        'Digest realm="proxy", nonce="p1", algorithm=MD5, qop="auth"',
    )
    client.receive(reply(request, 407, extra=(challenge,)), PEER, 0.1)
    _, again = sent(client)
    assert isinstance(again, Request)
    assert again.header("Authorization") is None
    assert (again.header("Proxy-Authorization") or "").startswith('Digest username="alice"')


def test_without_a_password_a_challenge_fails_the_call() -> None:
    client = SipClient(*ME)
    handle, request = invite(client)
    client.receive(
        reply(request, 401, extra=(("WWW-Authenticate", 'Digest realm="r", nonce="n"'),)), PEER, 0.1
    )
    assert client.events() == [CallFailed(handle, 401, "X")]


def test_cancel_waits_for_a_provisional_and_the_487_is_acked() -> None:
    client = SipClient(*ME)
    handle, request = invite(client)
    client.receive(reply(request, 100), PEER, 0.1)
    client.hangup(handle, 0.2)
    [cancel] = sent(client)
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL"
    assert cancel.vias[0].branch == request.vias[0].branch
    assert cancel.cseq == (request.cseq[0], "CANCEL")
    client.receive(reply(cancel, 200), PEER, 0.3)
    client.receive(reply(request, 487), PEER, 0.4)
    [ack] = sent(client)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert client.events() == [CallFailed(handle, 487, "X")]


def test_hangup_before_any_response_abandons_the_invite() -> None:
    client = SipClient(*ME)
    handle, _ = invite(client)
    client.hangup(handle, 0.2)
    assert sent(client) == []
    assert client.events() == [CallFailed(handle, 408, "no response")]
    assert client.get_timer() is None


def test_a_200_crossing_the_cancel_is_acked_and_ended_with_bye() -> None:
    client = SipClient(*ME)
    handle, request = invite(client)
    client.receive(reply(request, 180), PEER, 0.1)
    client.hangup(handle, 0.2)
    sent(client)
    client.events()
    client.receive(reply(request, 200, body=b"v=0\r\n"), PEER, 0.3)
    assert [m.method for m in sent(client) if isinstance(m, Request)] == ["ACK", "BYE"]
    assert client.events() == [CallFailed(handle, 487, "cancelled")]


def answered(client: SipClient) -> tuple[str, Request]:
    handle, request = invite(client)
    client.receive(reply(request, 200, body=b"v=0\r\n"), PEER, 0.1)
    sent(client)
    client.events()
    return handle, request


def test_the_peers_bye_gets_200_once_even_when_retransmitted() -> None:
    client = SipClient(*ME)
    handle, request = answered(client)
    bye = in_dialog("BYE", request, 1)
    client.receive(bye, PEER, 1.0)
    [ok] = sent(client)
    assert isinstance(ok, Response)
    assert ok.status == 200
    assert client.events() == [CallEnded(handle, "remote_bye")]
    client.receive(bye, PEER, 1.5)
    [again] = sent(client)
    assert isinstance(again, Response)
    assert again.status == 200
    assert client.events() == []
    client.receive(in_dialog("BYE", request, 2, branch="z9hG4bKother"), PEER, 2.0)
    [unknown] = sent(client)
    assert isinstance(unknown, Response)
    assert unknown.status == 481


def test_refer_202_and_notify_sipfrag_200_end_the_call() -> None:
    client = SipClient(*ME)
    handle, request = answered(client)
    client.refer(handle, "sip:human@192.0.2.50", 1.0)
    [refer] = sent(client)
    assert isinstance(refer, Request)
    assert refer.method == "REFER"
    assert refer.header("Refer-To") == "<sip:human@192.0.2.50>"
    assert (
        refer.header(
            "Referred-By",
        )
        is not None
    )
    with pytest.raises(RuntimeError):
        client.refer(handle, "sip:other@192.0.2.50", 1.1)
    client.receive(reply(refer, 202), PEER, 1.2)
    assert client.events() == [TransferProgress(handle, 202, False)]
    frag = (
        ("Event", "refer"),
        ("Subscription-State", "active"),
        ("Content-Type", "message/sipfrag"),
    )
    client.receive(
        in_dialog("NOTIFY", request, 1, body=b"SIP/2.0 180 Ringing\r\n", extra=frag), PEER, 1.3
    )
    client.receive(
        in_dialog(
            "NOTIFY",
            request,
            2,
            body=b"SIP/2.0 200 OK\r\n",
            branch="z9hG4bKn2",
            extra=(("Event", "refer"), ("Subscription-State", "terminated")),
        ),
        PEER,
        1.4,
    )
    out = sent(client)
    assert [m.status for m in out if isinstance(m, Response)] == [200, 200]
    assert [m.method for m in out if isinstance(m, Request)] == ["BYE"]
    assert client.events() == [
        TransferProgress(handle, 180, False),
        TransferProgress(handle, 200, True),
        CallEnded(handle, "transferred"),
    ]


def test_a_failed_transfer_keeps_the_call() -> None:
    client = SipClient(*ME)
    handle, request = answered(client)
    client.refer(handle, "sip:human@192.0.2.50", 1.0)
    [refer] = sent(client)
    assert isinstance(refer, Request)
    client.receive(reply(refer, 202), PEER, 1.1)
    client.receive(
        in_dialog(
            "NOTIFY",
            request,
            1,
            body=b"SIP/2.0 486 Busy Here\r\n",
            extra=(("Event", "refer"), ("Subscription-State", "terminated")),
        ),
        PEER,
        1.2,
    )
    assert client.events()[-1] == TransferProgress(handle, 486, True)
    assert client.calls == 1
    sent(client)
    client.refer(handle, "sip:other@192.0.2.50", 2.0)  # another try is allowed
    [second] = sent(client)
    assert isinstance(second, Request)
    client.receive(reply(second, 603), PEER, 2.1)
    assert client.events() == [TransferProgress(handle, 603, True)]


def test_register_refreshes_before_expiry_handles_423_and_unregisters() -> None:
    client = SipClient(*ME, user="alice", password="pw")
    aor = "sip:alice@192.0.2.9"
    client.register("sip:192.0.2.9", aor, 0.0, expires=30)
    [first] = sent(client)
    assert isinstance(first, Request)
    assert first.header("Expires") == "30"
    client.receive(reply(first, 423, extra=(("Min-Expires", "120"),)), PEER, 0.1)
    [second] = sent(client)
    assert isinstance(second, Request)
    assert second.header("Expires") == "120"
    assert second.cseq[0] == first.cseq[0] + 1
    assert second.call_id == first.call_id
    contact = second.header("Contact") or ""
    client.receive(reply(second, 200, extra=(("Contact", contact + ";expires=100"),)), PEER, 0.2)
    assert client.events() == [Registered(aor, 100)]
    client.handle_timer(70.1)  # 30 s before the 100 run out, not earlier
    assert sent(client) == []
    client.handle_timer(70.2)
    [refresh] = sent(client)
    assert isinstance(refresh, Request)
    client.receive(reply(refresh, 500), PEER, 70.3)
    assert client.events() == [RegistrationFailed(aor, 500)]
    assert client.registered == {}
    client.handle_timer(100.2)
    assert sent(client) == []
    client.handle_timer(100.3)  # retried after 30 s
    [retry] = sent(client)
    assert isinstance(retry, Request)
    client.receive(reply(retry, 200), PEER, 100.4)
    assert client.events() == [Registered(aor, 120)]  # the Expires asked, none in the 200
    assert client.unregister(110.0) == 1
    [removal] = sent(client)
    assert isinstance(removal, Request)
    assert removal.header("Expires") == "0"
    client.receive(reply(removal, 200), PEER, 110.1)
    assert client.events() == [Registered(aor, 0)]


def test_malformed_datagrams_are_counted_and_stray_responses_ignored() -> None:
    client = SipClient(*ME)
    client.receive(b"\x00\xffgarbage", PEER, 0.0)
    client.receive(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKnone\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
        PEER,
        0.0,
    )
    assert sum(client.errors.values()) == 1
    assert client.counters["stray_response"] == 1
    assert sent(client) == []
    assert client.events() == []


_STATUSES = st.sampled_from([100, 180, 183, 200, 202, 401, 407, 423, 486, 487, 500, 603])
_MUTATIONS = st.sampled_from(["none", "to", "cseq", "contact", "branch", "expires", "body"])


@st.composite
def _peer_traffic(draw: st.DrawFn) -> list[tuple[str, int, str, float]]:
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["reply", "bye", "notify", "timer"]),
                _STATUSES,
                _MUTATIONS,
                st.floats(0, 5),
            ),
            max_size=25,
        )
    )
    return steps


def _mutate(wire: bytes, how: str) -> bytes:
    if how == "to":
        return wire.replace(b"To: ", b"To: <<broken", 1)
    if how == "cseq":
        return wire.replace(b"CSeq: ", b"CSeq: x", 1)
    if how == "contact":
        return wire.replace(b"Contact: <sip:", b"Contact: <nope", 1)
    if how == "branch":
        return wire.replace(b"branch=z9hG4bK", b"branch=z9hG4bKzz", 1)
    if how == "expires":
        return wire.replace(b"\r\n\r\n", b"\r\nExpires: 99999999999999999999\r\n\r\n", 1)
    if how == "body":
        return wire.replace(b"Content-Length: 0", b"Content-Length: 5", 1)
    return wire


@settings(max_examples=150, deadline=None)
@given(_peer_traffic())
def test_fuzz_the_client_never_raises_and_forgets_everything_in_the_end(
    steps: list[tuple[str, int, str, float]],
) -> None:
    client = SipClient(*ME, user="alice", password="pw")
    handle, request = invite(client)
    client.register("sip:192.0.2.9", "sip:alice@192.0.2.9", 0.0, expires=60)
    last: list[Request] = [request, *[m for m in sent(client) if isinstance(m, Request)]]
    now = 0.0
    cseq = 1
    challenge = (("WWW-Authenticate", 'Digest realm="r", nonce="n", qop="auth"'),)
    for kind, status, how, dt in steps:
        now += dt
        if kind == "reply" and last:
            target = last[-1]
            extra = challenge if status == 401 else ()
            wire = reply(target, status, body=b"v=0\r\n" if status == 200 else b"", extra=extra)
            client.receive(_mutate(wire, how), PEER, now)
        elif kind in ("bye", "notify"):
            cseq += 1
            frag = (("Event", "refer"), ("Subscription-State", "terminated"))
            body = b"SIP/2.0 %d X\r\n" % status if kind == "notify" else b""
            wire = in_dialog(
                kind.upper(), request, cseq, body=body, extra=frag, branch=f"z9hG4bKf{cseq}"
            )
            client.receive(_mutate(wire, how), PEER, now)
        else:
            client.handle_timer(now)
        if client.calls and status == 202:
            with contextlib.suppress(KeyError, RuntimeError):
                client.refer(handle, "sip:human@192.0.2.50", now)
        last += [m for m in sent(client) if isinstance(m, Request)]
        client.events()
    client.hangup(handle, now)
    client.unregister(now)
    for _ in range(200):
        when = client.get_timer()
        if when is None:
            break
        now = max(now, when)
        client.handle_timer(now)
        sent(client)
    # every transaction and refresh timer ends once the call and registration are gone
    assert client.transactions == 0
    assert client.get_timer() is None


def test_a_challenged_refer_is_sent_again_with_credentials() -> None:
    client = SipClient(*ME, user="alice", password="pw")
    handle, _ = answered(client)
    client.refer(handle, "sip:human@192.0.2.50", 1.0)
    [refer] = sent(client)
    assert isinstance(refer, Request)
    challenge = ("Proxy-Authenticate", 'Digest realm="p", nonce="n9", qop="auth"')
    client.receive(reply(refer, 407, extra=(challenge,)), PEER, 1.1)
    [again] = sent(client)
    assert isinstance(again, Request)
    assert again.method == "REFER"
    assert again.cseq[0] == refer.cseq[0] + 1
    assert (again.header("Proxy-Authorization") or "").startswith("Digest ")
    assert client.events() == []
    client.receive(reply(again, 407, extra=(challenge,)), PEER, 1.2)
    assert client.events() == [TransferProgress(handle, 407, True)]  # once only
