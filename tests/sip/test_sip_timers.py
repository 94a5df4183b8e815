"""RFC 4028 session timers on the sans-I/O UAS, on a virtual clock: 422 below Min-SE, the
interval granted with the caller as refresher, refreshes by UPDATE and re-INVITE, and the
BYE when no refresh comes."""

from __future__ import annotations

from tests.sip.test_sip_reinvite import offer
from tests.sip.test_sip_uas import run_timers
from tests.sip.uac import CALLER, SERVER, Caller, requests, responses
from voxwire.sip.message import Response, parse_message
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
    handle, ok = call_with(s, caller, (*TIMER, ("x", "120;refresher=uas")), 0.0)
    assert ok.header("Session-Expires") == "120;refresher=uac"  # voxwire never refreshes
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


def test_no_timer_when_the_caller_cannot_refresh_or_did_not_ask() -> None:
    s = server()
    # a Session-Expires without Supported: timer (put in by a proxy): voxwire does not
    # refresh, so there is no timer and no 422
    caller = Caller()
    _, ok = call_with(s, caller, (("Session-Expires", "10"),), 0.0)
    assert ok.header("Session-Expires") is None
    assert s.counters["session_timer_declined"] == 1
    plain = Caller(call_id="plain")
    _, ok = call_with(s, plain, (), 0.0)
    assert ok.header("Session-Expires") is None
    assert byes(run_timers(s, 10_000.0)) == []
    assert s.calls == 2


def test_require_timer_is_taken_a_large_interval_capped_a_bad_one_400() -> None:
    s = server(session_expires=600)
    caller = Caller()
    _, ok = call_with(s, caller, (*TIMER, ("Require", "timer"), ("Session-Expires", "7200")), 0.0)
    assert ok.header("Session-Expires") == "600;refresher=uac"
    s.receive(Caller(call_id="bad").invite(extra=(*TIMER, ("Session-Expires", "soon"))), CALLER, 0)
    assert [r.status for r in responses(s.datagrams())] == [400]
    assert requests(s.datagrams()) == []
