"""RFC 4028 session timers on the sans-I/O UAS, on a virtual clock: 422 below Min-SE, the
interval granted with the refresher the request names, the caller's refreshes by UPDATE
and re-INVITE, voxwire's own refreshes when it is the refresher, and the BYE when no
refresh comes or voxwire's fails."""

from __future__ import annotations

from tests.sip.test_sip_reinvite import offer
from tests.sip.test_sip_uas import run_timers
from tests.sip.uac import CALLER, SERVER, Caller, requests, responses
from voxwire.sip.message import Request, Response, parse_message
from voxwire.sip.uas import CallEnded, IncomingCall, SipServer

TIMER = (("Supported", "timer"),)


def server(**kw: object) -> SipServer:
    return SipServer(SERVER[0], SERVER[1], **kw)  # type: ignore[arg-type]


def call_with(
    s: SipServer, caller: Caller, headers: tuple[tuple[str, str], ...], now: float
) -> tuple[str, Response]:
    s.receive(caller.invite(extra=headers), CALLER, now)
    (event,) = s.events()
    assert isinstance(event, IncomingCall)
    s.answer(event.handle, SERVER[0], 40000, now)
    ok = responses(s.datagrams())[-1]
    assert ok.status == 200
    caller.to_tag = ok.to.tag
    s.receive(caller.ack(), CALLER, now)
    s.events()
    return event.handle, ok


def byes(sent: list[tuple[float, bytes]]) -> list[float]:
    """When the first BYE went (the others are its Timer E retransmissions)."""
    return [w for w, wire in sent if getattr(parse_message(wire), "method", "") == "BYE"][:1]


def test_too_small_an_interval_gets_422_with_min_se() -> None:
    s = server(min_se=90)
    caller = Caller()
    s.receive(caller.invite(extra=(*TIMER, ("Session-Expires", "60"))), CALLER, 0.0)
    (response,) = responses(s.datagrams())
    assert response.status == 422
    assert response.header("Min-SE") == "90"
    assert s.events() == []
    assert s.counters["session_too_small"] == 1
    # the retry with the interval raised is taken
    caller.cseq = 2
    s.receive(caller.invite(extra=(*TIMER, ("Session-Expires", "90"))), CALLER, 0.1)
    assert isinstance(s.events()[0], IncomingCall)


def test_the_session_is_granted_and_ends_with_a_bye_without_a_refresh() -> None:
    s = server()
    caller = Caller()
    handle, ok = call_with(s, caller, (*TIMER, ("x", "120")), 0.0)
    assert ok.header("Session-Expires") == "120;refresher=uac"  # no refresher asked: the caller
    assert "timer" in ok.header_values("Require")
    assert "timer" in ok.header_values("Supported")
    sent = run_timers(s, 200.0)
    assert byes(sent) == [88.0]  # 120 - min(32, 120 / 3): RFC 4028 section 10
    assert s.events() == [CallEnded(handle, "session_expired")]
    assert s.counters["session_expired"] == 1
    assert s.calls == 0


def test_refreshes_by_update_and_reinvite_push_the_end_back() -> None:
    s = server(min_se=30)
    caller = Caller()
    call_with(s, caller, (*TIMER, ("Session-Expires", "90")), 0.0)
    assert byes(run_timers(s, 50.0)) == []
    caller.cseq += 1
    s.receive(caller.request("UPDATE", extra=(*TIMER, ("Session-Expires", "60"))), CALLER, 50.0)
    (refreshed,) = responses(s.datagrams())
    assert (refreshed.status, refreshed.body) == (200, b"")
    assert refreshed.header("Session-Expires") == "60;refresher=uac"
    assert byes(run_timers(s, 80.0)) == []  # the first grant would have ended at 60
    caller.cseq += 1
    reinvite = caller.request("INVITE", body=offer(), extra=(*TIMER, ("Session-Expires", "90")))
    s.receive(reinvite, CALLER, 80.0)
    (ok,) = responses(s.datagrams())
    assert ok.header("Session-Expires") == "90;refresher=uac"
    s.receive(caller.request("ACK"), CALLER, 80.0)
    assert byes(run_timers(s, 200.0)) == [80.0 + 60.0]


def test_no_timer_when_the_caller_did_not_ask() -> None:
    s = server()
    plain = Caller(call_id="plain")
    _, ok = call_with(s, plain, (), 0.0)
    assert ok.header("Session-Expires") is None
    assert byes(run_timers(s, 10_000.0)) == []
    assert s.calls == 1


def test_require_timer_is_taken_a_large_interval_capped_a_bad_one_400() -> None:
    s = server(session_expires=600)
    caller = Caller()
    _, ok = call_with(s, caller, (*TIMER, ("Require", "timer"), ("Session-Expires", "7200")), 0.0)
    assert ok.header("Session-Expires") == "600;refresher=uac"
    s.receive(Caller(call_id="bad").invite(extra=(*TIMER, ("Session-Expires", "soon"))), CALLER, 0)
    assert [r.status for r in responses(s.datagrams())] == [400]
    assert requests(s.datagrams()) == []


# --- voxwire as the refresher ---------------------------------------------------------------

ALLOW_UPDATE = ("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE")


def reply(request: Request, status: int, *extra: tuple[str, str], body: bytes = b"") -> bytes:
    """The caller's response to a request voxwire sent it."""
    names = ("Via", "From", "To", "Call-ID", "CSeq")
    headers = [(n, v) for n, v in request.headers if n in names]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return Response(status, "X", [*headers, *extra], body).encode()


def sent_requests(sent: list[tuple[float, bytes]], method: str) -> list[tuple[float, Request]]:
    out = []
    for when, wire in sent:
        message = parse_message(wire)
        if isinstance(message, Request) and message.method == method:
            out.append((when, message))
    return out


def test_asked_to_refresh_voxwire_sends_an_update_at_half_the_interval() -> None:
    s = server()
    caller = Caller()
    handle, ok = call_with(
        s, caller, (*TIMER, ALLOW_UPDATE, ("Session-Expires", "120;refresher=uas")), 0.0
    )
    assert ok.header("Session-Expires") == "120;refresher=uas"
    assert "timer" in ok.header_values("Require")
    now, refreshes = 0.0, 0
    while now < 600.0:
        sent = run_timers(s, now + 60.2)  # (its first retransmission would be at +60.5)
        assert byes(sent) == []
        ((when, update),) = sent_requests(sent, "UPDATE")
        assert when == now + 60.0  # half of 120 after the grant or the last refresh
        assert update.body == b""
        assert update.uri == f"sip:alice@{CALLER[0]}:{CALLER[1]}"  # the caller's Contact
        assert update.to.tag == caller.from_tag
        assert update.from_.tag == ok.to.tag
        assert update.header("Session-Expires") == "120;refresher=uac"  # voxwire, its sender
        assert "timer" in update.header_values("Supported")
        assert update.header("Min-SE") == "90"
        now = when + 0.1
        s.receive(reply(update, 200, ("Session-Expires", "120;refresher=uac")), CALLER, now)
        refreshes += 1
    assert s.counters["session_refreshed"] == refreshes == 10
    assert s.events() == []
    assert s.calls == 1
    # an unanswered refresh is retransmitted (Timer E), then the caller's 481 ends the call
    sent = run_timers(s, now + 61.0)
    ((first, update),) = sent_requests(sent, "UPDATE")[:1]
    assert [w - first for w, _ in sent_requests(sent, "UPDATE")] == [0.0, 0.5]
    s.receive(reply(update, 481), CALLER, now + 61.0)
    (bye,) = requests(s.datagrams())
    assert bye.method == "BYE"
    assert s.events() == [CallEnded(handle, "session_refresh_failed")]
    assert s.calls == 0


def test_a_proxys_timer_for_a_caller_without_one_is_refreshed_by_reinvite() -> None:
    s = server()
    caller = Caller()
    # Session-Expires without Supported: timer (a proxy put it in), no UPDATE in Allow:
    # voxwire refreshes (RFC 4028 table 2), at no less than its Min-SE, without Require
    handle, ok = call_with(s, caller, (("Session-Expires", "60"),), 0.0)
    assert ok.header("Session-Expires") == "90;refresher=uas"
    assert "timer" not in ok.header_values("Require")
    assert s.counters["session_refreshed_by_voxwire"] == 1
    sent = run_timers(s, 45.0)
    ((when, invite),) = sent_requests(sent, "INVITE")
    assert when == 45.0
    assert invite.body == ok.body  # the session as it is, its o= version kept
    assert invite.header("Content-Type") == "application/sdp"
    assert invite.header("Session-Expires") == "90;refresher=uac"
    # the caller's 200 (a proxy's Session-Expires in it) is acknowledged, and again for
    # each retransmission of it
    ok2 = reply(invite, 200, ("Session-Expires", "90;refresher=uac"), body=offer())
    for at in (45.1, 45.6):
        s.receive(ok2, CALLER, at)
        (ack,) = requests(s.datagrams())
        assert (ack.method, ack.cseq) == ("ACK", (invite.cseq[0], "ACK"))
        assert ack.vias[0].branch != invite.vias[0].branch  # a 2xx's ACK: a new branch
    assert s.counters["session_refreshed"] == 1
    sent = run_timers(s, 90.3)
    ((when, again),) = sent_requests(sent, "INVITE")
    assert when == 45.1 + 45.0
    assert again.cseq[0] > invite.cseq[0]
    # a 2xx without Session-Expires: the session no longer expires (section 7.2)
    s.receive(reply(again, 200, body=offer()), CALLER, 90.2)
    assert [r.method for r in requests(s.datagrams())] == ["ACK"]
    assert byes(run_timers(s, 10_000.0)) == []
    assert s.calls == 1
    s.hangup(handle, 10_000.0)
    assert [r.method for r in requests(s.datagrams())] == ["BYE"]


def test_a_refresh_failure_within_the_reinvite_is_acknowledged_and_ends_the_call() -> None:
    s = server()
    caller = Caller()
    handle, _ = call_with(s, caller, (*TIMER, ("Session-Expires", "300;refresher=uas")), 0.0)
    ((_, invite),) = sent_requests(run_timers(s, 150.0), "INVITE")
    s.receive(reply(invite, 100), CALLER, 150.1)  # proceeding: no more retransmissions
    assert sent_requests(run_timers(s, 155.0), "INVITE") == []
    s.receive(reply(invite, 408), CALLER, 160.0)
    ack, bye = requests(s.datagrams())
    assert ack.method == "ACK"
    assert ack.vias[0].branch == invite.vias[0].branch
    assert bye.method == "BYE"
    assert s.events() == [CallEnded(handle, "session_refresh_failed")]


def test_a_refresh_never_answered_ends_the_call_before_the_session_would() -> None:
    s = server()
    caller = Caller()
    handle, _ = call_with(
        s, caller, (*TIMER, ALLOW_UPDATE, ("Session-Expires", "300;refresher=uas")), 0.0
    )
    sent = run_timers(s, 400.0)
    updates = sent_requests(sent, "UPDATE")
    assert updates[0][0] == 150.0
    assert byes(sent) == [150.0 + 32.0]  # Timer F, before the expiry's BYE (at 268 s)
    assert s.counters["session_refresh_timeout"] == 1
    assert s.events() == [CallEnded(handle, "session_refresh_failed")]


def test_voxwires_refresh_crossing_the_callers_offer_and_a_422() -> None:
    s = server(min_se=90)
    caller = Caller()
    call_with(s, caller, (*TIMER, ("Session-Expires", "100;refresher=uas")), 0.0)
    ((_, invite),) = sent_requests(run_timers(s, 50.0), "INVITE")
    # the caller's re-INVITE while voxwire's is open: 491 (RFC 3261 section 14.2)
    caller.cseq += 1
    s.receive(caller.request("INVITE", body=offer()), CALLER, 50.1)
    (glare,) = responses(s.datagrams())
    assert glare.status == 491
    # and the caller's 491 to voxwire's: again within 0-2 s (it does not own the Call-ID)
    s.receive(reply(invite, 491), CALLER, 50.2)
    assert [r.method for r in requests(s.datagrams())] == ["ACK"]
    ((when, retry),) = sent_requests(run_timers(s, 52.3), "INVITE")[:1]
    assert 50.2 <= when <= 52.2
    assert retry.cseq[0] > invite.cseq[0]
    # 422: again at once with the interval the caller wants
    s.receive(reply(retry, 422, ("Min-SE", "200")), CALLER, when + 0.1)
    ack, larger = requests(s.datagrams())
    assert ack.method == "ACK"
    assert larger.method == "INVITE"
    assert larger.header("Session-Expires") == "200;refresher=uac"
    assert larger.header("Min-SE") == "200"
