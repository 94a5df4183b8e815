"""re-INVITE and UPDATE on the sans-I/O UAS: hold and unhold, the answer's direction and
o= version, retransmission of the 2xx, overlapping requests (500 + Retry-After), refused
offers (488, the session unchanged), offerless re-INVITEs, UPDATE."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sip.test_sip_uas import answered, incoming, run_timers, server
from tests.sip.uac import CALLER, OFFER, SERVER, Caller, responses, statuses
from voxwire.sip.message import Response, parse_message
from voxwire.sip.sdp import parse_sdp
from voxwire.sip.uas import CallConfirmed, CallUpdated, SipServer


def offer(direction: str = "sendrecv", host: str = "192.0.2.9", port: int = 49170) -> bytes:
    return (
        OFFER.replace(b"192.0.2.9", host.encode())
        .replace(b"49170", str(port).encode())
        .replace(b"a=ptime:20\r\n", f"a=ptime:20\r\na={direction}\r\n".encode())
    )


def confirmed(s: SipServer, caller: Caller) -> tuple[str, Response]:
    call = answered(s, caller)
    s.receive(caller.ack(), CALLER, 0.0)
    assert s.events() == [CallConfirmed(call.handle)]
    ok = parse_message(s._dialogs[call.handle].ok or b"")
    assert isinstance(ok, Response)
    return call.handle, ok


def reinvite(s: SipServer, caller: Caller, body: bytes, now: float) -> Response:
    caller.cseq += 1
    s.receive(caller.request("INVITE", body=body), CALLER, now)
    (response,) = responses(s.datagrams())
    return response


def ack(s: SipServer, caller: Caller, now: float, body: bytes = b"") -> None:
    s.receive(caller.request("ACK", body=body), CALLER, now)


def origin(response: Response) -> tuple[str, str]:
    fields = parse_sdp(response.body).origin.split()
    return fields[1], fields[2]  # session id, version


def test_hold_and_unhold_mirror_the_direction_and_raise_the_version() -> None:
    s = server()
    caller = Caller()
    handle, first = confirmed(s, caller)
    session_id, version = origin(first)
    assert b"a=sendrecv" in first.body
    steps = [
        ("sendonly", b"a=recvonly", False, True),  # held: send nothing
        ("sendrecv", b"a=sendrecv", True, True),  # resumed
        ("inactive", b"a=inactive", False, False),
        ("recvonly", b"a=sendonly", True, False),  # the caller sends nothing
        ("sendrecv", b"a=sendrecv", True, True),
    ]
    now = 1.0
    for offered, answered_with, sending, receiving in steps:
        ok = reinvite(s, caller, offer(offered), now)
        assert ok.status == 200, offered
        assert answered_with + b"\r\n" in ok.body
        assert b"m=audio 40000 RTP/AVP 0 101\r\n" in ok.body  # the same port and codec
        assert ok.to.tag == handle
        assert ok.header("Contact") == f"<sip:{SERVER[0]}:{SERVER[1]}>"
        new_id, new_version = origin(ok)
        assert new_id == session_id
        assert int(new_version) == int(version) + 1  # RFC 3264 section 8
        version = new_version
        (event,) = s.events()
        assert isinstance(event, CallUpdated)
        assert (event.handle, event.method) == (handle, "INVITE")
        assert (event.sending, event.receiving) == (sending, receiving)
        ack(s, caller, now + 0.1)
        assert s.events() == []  # no second CallConfirmed
        now += 1.0
    # the same offer again: the same answer, the same version
    ok = reinvite(s, caller, offer("sendrecv"), now)
    assert origin(ok) == (session_id, version)
    ack(s, caller, now)
    assert run_timers(s, now + 100.0) == []  # every 2xx was acknowledged
    assert s.counters["session_updated"] == 6
    assert s.calls == 1


def test_the_old_hold_with_c_0000_is_answered_recvonly() -> None:
    s = server()
    caller = Caller()
    confirmed(s, caller)
    ok = reinvite(s, caller, offer(host="0.0.0.0"), 1.0)
    assert ok.status == 200
    assert b"a=recvonly\r\n" in ok.body
    (event,) = s.events()
    assert isinstance(event, CallUpdated)
    assert not event.sending
    assert event.answer.remote == ("0.0.0.0", 49170)


def test_the_2xx_of_a_reinvite_is_retransmitted_until_its_ack() -> None:
    s = server()
    caller = Caller()
    confirmed(s, caller)
    ok = reinvite(s, caller, offer("sendonly"), 10.0)
    sent = run_timers(s, 12.0)
    assert [w for w, _ in sent] == [10.5, 11.5]
    assert all(parse_message(wire).cseq == ok.cseq for _, wire in sent)
    # a retransmitted re-INVITE is absorbed (its 2xx goes on its own timer)
    s.receive(
        caller.request("INVITE", body=offer("sendonly"), branch=caller.branches["INVITE"]),
        CALLER,
        12.0,
    )
    assert s.datagrams() == []
    ack(s, caller, 12.1)
    assert run_timers(s, 100.0) == []
    assert s.counters["retransmitted_200"] == 2


def test_a_reinvite_before_the_last_invite_is_done_gets_500_with_retry_after() -> None:
    s = server()
    caller = Caller()
    call = answered(s, caller)  # the 200 is not acknowledged yet
    for now in (0.1, 0.2):
        busy = reinvite(s, caller, offer("sendonly"), now)
        assert busy.status == 500
        assert 0 <= int(busy.header("Retry-After") or "-1") <= 10
    s.receive(caller.ack(), CALLER, 0.3)  # the ACK of the first 200
    assert s.events() == [CallConfirmed(call.handle)]
    assert reinvite(s, caller, offer("sendonly"), 0.4).status == 200
    assert isinstance(s.events()[0], CallUpdated)
    # before the answer: the INVITE has no final response yet
    early = Caller(call_id="early")
    early.to_tag = incoming(s, early).handle
    assert reinvite(s, early, offer("sendonly"), 1.0).status == 500
    assert s.counters["overlapping_INVITE"] == 3


def test_an_offer_without_the_calls_codec_gets_488_and_the_session_stays() -> None:
    s = server()
    caller = Caller()
    _, first = confirmed(s, caller)
    pcma = offer("sendonly").replace(b"RTP/AVP 0 8 101", b"RTP/AVP 8 101")
    refused = reinvite(s, caller, pcma, 1.0)
    assert refused.status == 488
    assert "305" in (refused.header("Warning") or "")
    assert s.events() == []
    s.receive(caller.request("ACK", branch=caller.branches["INVITE"]), CALLER, 1.1)
    assert run_timers(s, 10.0) == []  # the ACK of the 488 ended Timer G
    assert reinvite(s, caller, b"v=0\r\nbroken", 2.0).status == 400
    assert s.errors["sdp_no_common_codec"] == 1
    # the session is as it was: the same answer gets the same version
    ok = reinvite(s, caller, offer("sendrecv"), 3.0)
    assert origin(ok) == origin(first)
    assert s.calls == 1


def test_an_offerless_reinvite_offers_the_session_and_the_ack_answers() -> None:
    s = server()
    caller = Caller()
    _, first = confirmed(s, caller)
    ok = reinvite(s, caller, b"", 1.0)
    assert ok.status == 200
    assert ok.body == first.body  # the session as it is, the same version
    assert s.events() == []
    # the caller's answer puts the call on hold
    ack(s, caller, 1.1, body=offer("sendonly"))
    (event,) = s.events()
    assert isinstance(event, CallUpdated)
    assert (event.method, event.answer.direction, event.sending) == ("ACK", "recvonly", False)
    # a later offer compares with what was sent, and raises the version
    ok = reinvite(s, caller, offer("sendonly"), 2.0)
    assert int(origin(ok)[1]) == int(origin(first)[1]) + 1


def test_update_with_and_without_an_offer() -> None:
    s = server()
    caller = Caller()
    confirmed(s, caller)
    caller.cseq += 1
    s.receive(caller.request("UPDATE", body=offer("inactive")), CALLER, 1.0)
    (ok,) = responses(s.datagrams())
    assert (ok.status, ok.cseq[1]) == (200, "UPDATE")
    assert b"a=inactive\r\n" in ok.body
    assert ok.header("Contact") == f"<sip:{SERVER[0]}:{SERVER[1]}>"
    (event,) = s.events()
    assert isinstance(event, CallUpdated)
    assert event.method == "UPDATE"
    caller.cseq += 1
    s.receive(caller.request("UPDATE"), CALLER, 2.0)
    (refresh,) = responses(s.datagrams())
    assert (refresh.status, refresh.body) == (200, b"")
    assert s.events() == []
    assert run_timers(s, 100.0) == []  # no ACK for UPDATE: nothing is retransmitted
    s.receive(Caller(call_id="out").request("UPDATE"), CALLER, 100.0)
    assert statuses(s.datagrams()) == [481]  # outside a dialog
    early = Caller(call_id="early")
    early.to_tag = incoming(s, early, 100.0).handle
    early.cseq += 1
    s.receive(early.request("UPDATE", body=offer()), CALLER, 100.1)
    (busy,) = responses(s.datagrams())
    assert busy.status == 500
    assert busy.header("Retry-After") is not None


_BODIES = [
    b"",
    offer(),
    offer("sendonly"),
    offer("inactive"),
    offer(host="0.0.0.0"),
    offer(port=0),
    OFFER.replace(b"RTP/AVP 0 8 101", b"RTP/AVP 8"),
    b"v=0\r\nbroken",
    b"not sdp at all",
]
_HEADERS = [
    (),
    (("Supported", "timer"), ("Session-Expires", "120")),
    (("Supported", "timer"), ("Session-Expires", "5")),
    # voxwire as the refresher: its UPDATEs or re-INVITEs go unanswered and time out
    (("Supported", "timer"), ("Allow", "UPDATE"), ("Session-Expires", "30;refresher=uas")),
    (("Session-Expires", "40"),),
    (("Session-Expires", "abc"),),
    (("Require", "timer"), ("Min-SE", "99999999999")),
    (("Content-Type", "text/plain"),),
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["INVITE", "UPDATE", "ACK", "OPTIONS", "INFO", "BYE"]),
            st.integers(-1, 2),  # CSeq step: old, same, next, a jump
            st.sampled_from(_BODIES),
            st.sampled_from(_HEADERS),
            st.floats(0, 40),
            st.booleans(),  # a retransmission (the last branch again)
        ),
        max_size=20,
    )
)
def test_fuzz_in_dialog_traffic_never_raises_and_leaves_nothing_behind(
    traffic: list[tuple[str, int, bytes, tuple[tuple[str, str], ...], float, bool]],
) -> None:
    s = server(min_se=30)
    caller = Caller()
    handle, _ = confirmed(s, caller)
    now = 0.0
    for method, step, body, headers, wait, again in traffic:
        now += wait
        s.handle_timer(now)
        caller.cseq = max(1, caller.cseq + step)
        branch = caller.branches.get(method) if again else None
        wire = caller.request(method, body=body, extra=headers, branch=branch)
        s.receive(wire, CALLER, now)
        for response in responses(s.datagrams()):
            assert response.status in (200, 400, 415, 420, 422, 481, 488, 491, 500, 405)
        for event in s.events():
            if isinstance(event, CallUpdated):
                assert event.answer.codec == "pcmu"
    s.hangup(handle, now)
    run_timers(s, now + 1000.0)
    assert s.transactions == 0
    assert s.get_timer() is None
    assert s.calls == 0


def test_a_new_offer_while_voxwires_offer_is_pending_gets_491() -> None:
    s = server()
    caller = Caller()
    handle, first = confirmed(s, caller)
    ok = reinvite(s, caller, b"", 1.0)  # no offer: the 200 offers, the ACK will answer
    assert ok.status == 200
    offerless = caller.cseq
    # an UPDATE with an offer crosses voxwire's (RFC 3311 section 5.2)
    caller.cseq += 1
    s.receive(caller.request("UPDATE", body=offer("inactive")), CALLER, 1.1)
    (pending,) = responses(s.datagrams())
    assert (pending.status, pending.reason, pending.cseq[1]) == (491, "Request Pending", "UPDATE")
    assert pending.header("Retry-After") is None  # the caller picks its own wait (s. 14.1)
    # so does a re-INVITE with one
    crossing = reinvite(s, caller, offer("sendonly"), 1.2)
    assert crossing.status == 491
    s.receive(caller.request("ACK", branch=caller.branches["INVITE"]), CALLER, 1.25)
    assert s.datagrams() == []  # the 491's ACK ends its transaction
    assert s.events() == []  # the session is as it was
    assert s._dialogs[handle].answer is not None
    assert s._dialogs[handle].answer.direction == "sendrecv"  # type: ignore[union-attr]
    # an UPDATE without a body is only a refresh: not refused
    caller.cseq += 1
    s.receive(caller.request("UPDATE"), CALLER, 1.3)
    assert statuses(s.datagrams()) == [200]
    # the ACK of the offerless re-INVITE brings the answer, which applies
    s.receive(caller.request("ACK", cseq=offerless, body=offer("sendonly")), CALLER, 1.4)
    (event,) = s.events()
    assert isinstance(event, CallUpdated)
    assert (event.method, event.answer.direction) == ("ACK", "recvonly")
    assert s.counters["offer_pending"] == 2
    assert s.counters["response_491"] == 2
    # with no offer pending, the same re-INVITE is answered
    again = reinvite(s, caller, offer("sendrecv"), 2.0)
    assert again.status == 200
    assert again.body == first.body  # back to the first session, sent as it was
