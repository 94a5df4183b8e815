"""The sans-I/O UAS against a scripted caller, in memory, on a virtual clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sip.uac import CALLER, OFFER, SERVER, Caller, requests, responses, statuses
from voxwire.sip.message import parse_message
from voxwire.sip.uas import CallCancelled, CallConfirmed, CallEnded, IncomingCall, SipServer

T1 = 0.5


def server(**kw: object) -> SipServer:
    return SipServer(SERVER[0], SERVER[1], **kw)  # type: ignore[arg-type]


def incoming(s: SipServer, caller: Caller, now: float = 0.0) -> IncomingCall:
    s.receive(caller.invite(), CALLER, now)
    assert statuses(s.datagrams()) == [100]
    (event,) = s.events()
    assert isinstance(event, IncomingCall)
    return event


def answered(s: SipServer, caller: Caller, now: float = 0.0) -> IncomingCall:
    call = incoming(s, caller, now)
    s.ring(call.handle)
    s.answer(call.handle, SERVER[0], 40000, now)
    out = responses(s.datagrams())
    assert [r.status for r in out] == [180, 200]
    caller.to_tag = out[1].to.tag
    return call


def run_timers(s: SipServer, until: float) -> list[tuple[float, bytes]]:
    """Fire every timer up to ``until``; return (when, datagram) of what was sent."""
    sent: list[tuple[float, bytes]] = []
    while (when := s.get_timer()) is not None and when <= until:
        s.handle_timer(when)
        sent += [(when, wire) for wire, _ in s.datagrams()]
    return sent


def test_invite_rings_answers_and_the_ack_confirms() -> None:
    s = server()
    caller = Caller()
    call = incoming(s, caller)
    assert call.answer.codec == "pcmu"
    assert call.answer.payload_type == 0
    assert call.answer.telephone_event == 101
    assert call.answer.remote == ("192.0.2.9", 49170)
    s.ring(call.handle)
    (ringing,) = responses(s.datagrams())
    assert ringing.status == 180
    assert ringing.to.tag == call.handle
    assert ringing.header("Contact") == f"<sip:{SERVER[0]}:{SERVER[1]}>"
    # a retransmitted INVITE gets the last provisional response again (section 17.2.1)
    s.receive(caller.invite(branch=caller.branches["INVITE"]), CALLER, 0.1)
    assert statuses(s.datagrams()) == [180]
    assert s.events() == []
    sdp = s.answer(call.handle, SERVER[0], 40000, 0.2)
    (ok,) = responses(s.datagrams())
    assert ok.status == 200
    assert ok.body == sdp
    assert ok.to.tag == call.handle
    assert ok.header("Content-Type") == "application/sdp"
    assert b"m=audio 40000 RTP/AVP 0 101\r\n" in ok.body
    assert ok.cseq == (1, "INVITE")
    assert ok.call_id == caller.call_id
    caller.to_tag = ok.to.tag
    s.receive(caller.ack(), CALLER, 0.3)
    assert s.events() == [CallConfirmed(call.handle)]
    # an INVITE retransmission after the 2xx is absorbed (RFC 6026 section 7.1)
    s.receive(caller.invite(branch=caller.branches["INVITE"], to_tag=""), CALLER, 0.4)
    assert s.datagrams() == []
    assert s.counters["absorbed"] == 1
    assert run_timers(s, 60.0) == []  # no 200 retransmission after the ACK
    assert s.calls == 1


def test_the_200_is_retransmitted_on_t1_doubling_to_t2_until_the_ack() -> None:
    s = server()
    caller = Caller()
    answered(s, caller)
    sent = run_timers(s, 12.0)
    assert [w for w, _ in sent] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(parse_message(wire).status == 200 for _, wire in sent)  # type: ignore[union-attr]
    s.receive(caller.ack(), CALLER, 12.0)
    assert isinstance(s.events()[0], CallConfirmed)
    assert run_timers(s, 100.0) == []
    assert s.counters["retransmitted_200"] == 5


def test_no_ack_in_64_t1_ends_the_call_with_a_bye() -> None:
    s = server()
    caller = Caller()
    call = answered(s, caller)
    sent = run_timers(s, 64 * T1)
    byes = [(w, m) for w, wire in sent if (m := parse_message(wire)) and hasattr(m, "method")]
    assert [w for w, _ in byes] == [64 * T1]
    assert s.events() == [CallEnded(call.handle, "no_ack")]
    assert s.counters["no_ack"] == 1
    assert s.calls == 0


def test_cancel_before_the_answer_gets_200_then_487_and_the_ack_stops_timer_g() -> None:
    s = server()
    caller = Caller()
    call = incoming(s, caller)
    s.ring(call.handle)
    s.datagrams()
    cancel = caller.request("CANCEL", branch=caller.branches["INVITE"])
    s.receive(cancel, CALLER, 1.0)
    out = responses(s.datagrams())
    assert [(r.status, r.cseq[1]) for r in out] == [(200, "CANCEL"), (487, "INVITE")]
    assert out[0].to.tag == out[1].to.tag == call.handle
    assert s.events() == [CallCancelled(call.handle)]
    # Timer G retransmits the 487 until the ACK (same branch as the INVITE)
    sent = run_timers(s, 2.0)
    assert [w for w, _ in sent] == [1.5]
    s.receive(caller.ack(branch=caller.branches["INVITE"], to_tag=call.handle), CALLER, 2.0)
    assert run_timers(s, 100.0) == []
    # after the answer a CANCEL changes nothing: 200 to it, no 487
    caller2 = Caller(call_id="call-2")
    answered(s, caller2, 100.0)
    s.receive(caller2.request("CANCEL", branch=caller2.branches["INVITE"]), CALLER, 100.1)
    assert statuses(s.datagrams()) == [200]
    assert s.calls == 1


def test_cancel_without_an_invite_is_481() -> None:
    s = server()
    s.receive(Caller().request("CANCEL"), CALLER, 0.0)
    assert statuses(s.datagrams()) == [481]


def test_bye_from_the_caller_ends_the_call_and_its_retransmission_gets_200_again() -> None:
    s = server()
    caller = Caller()
    call = answered(s, caller)
    s.receive(caller.ack(), CALLER, 0.1)
    s.events()
    bye = caller.request("BYE", cseq=2)
    s.receive(bye, CALLER, 1.0)
    assert statuses(s.datagrams()) == [200]
    assert s.events() == [CallEnded(call.handle, "remote_bye")]
    s.receive(bye, CALLER, 1.5)
    assert statuses(s.datagrams()) == [200]
    assert s.events() == []
    # the dialog is gone: another BYE in it is 481 (section 12.2.2)
    s.receive(caller.request("BYE", cseq=3), CALLER, 2.0)
    assert statuses(s.datagrams()) == [481]
    # Timer J ends the BYE transactions
    run_timers(s, 100.0)
    assert s.transactions == 0


def test_a_request_with_an_old_cseq_is_500_and_a_reinvite_200() -> None:
    s = server()
    caller = Caller()
    answered(s, caller)
    s.receive(caller.ack(), CALLER, 0.1)
    s.receive(caller.request("BYE", cseq=1), CALLER, 0.2)
    assert statuses(s.datagrams()) == [500]
    s.receive(caller.invite(cseq=2), CALLER, 0.3)
    assert statuses(s.datagrams()) == [200]  # the same offer: the same session
    assert s.calls == 1


def test_server_bye_retransmits_on_timer_e_and_gives_up_at_timer_f() -> None:
    s = server()
    caller = Caller()
    call = answered(s, caller)
    s.receive(caller.ack(), CALLER, 0.0)
    s.hangup(call.handle, 0.0)
    out = s.datagrams()
    (bye,) = requests(out)
    assert bye.method == "BYE"
    assert bye.uri == f"sip:alice@{CALLER[0]}:{CALLER[1]}"
    assert out[0][1] == CALLER  # the Contact's address
    assert bye.from_.tag == call.handle
    assert bye.to.tag == caller.from_tag
    assert bye.call_id == caller.call_id
    assert bye.cseq[1] == "BYE"
    sent = run_timers(s, 64 * T1)
    times = [w for w, _ in sent]
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert times[-1] <= 64 * T1
    assert s.counters["bye_timeout"] == 1
    assert s.transactions == 0


def test_server_bye_stops_on_the_200() -> None:
    s = server()
    caller = Caller()
    call = answered(s, caller)
    s.receive(caller.ack(), CALLER, 0.0)
    s.hangup(call.handle, 0.0)
    (bye,) = requests(s.datagrams())
    via = bye.header("Via")
    assert via is not None
    ok = (
        f"SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {bye.header('From')}\r\n"
        f"To: {bye.header('To')}\r\nCall-ID: {bye.call_id}\r\nCSeq: {bye.header('CSeq')}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    s.receive(ok, CALLER, 0.2)
    assert run_timers(s, 100.0) == []
    assert s.counters["received_200"] == 1
    assert s.counters["bye_timeout"] == 0


def test_options_is_200_and_503_while_draining() -> None:
    s = server()
    s.receive(Caller().request("OPTIONS"), CALLER, 0.0)
    (ok,) = responses(s.datagrams())
    assert ok.status == 200
    assert ok.header("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"
    assert ok.header("Accept") == "application/sdp"
    assert ok.to.tag
    s.draining = True
    s.receive(Caller().request("OPTIONS"), CALLER, 0.1)
    (busy,) = responses(s.datagrams())
    assert busy.status == 503
    assert busy.header("Retry-After") == "5"
    s.receive(Caller(call_id="c-new").invite(), CALLER, 0.2)
    assert statuses(s.datagrams()) == [503]
    assert s.events() == []


@pytest.mark.parametrize(
    ("method", "status"),
    [("REGISTER", 405), ("SUBSCRIBE", 405), ("UPDATE", 481), ("FOO", 501)],
)
def test_other_methods(method: str, status: int) -> None:
    s = server()
    s.receive(Caller().request(method), CALLER, 0.0)
    (response,) = responses(s.datagrams())
    assert response.status == status
    if status == 405:
        assert response.header("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"


def test_invites_that_cannot_be_answered() -> None:
    s = server()
    s.receive(Caller(call_id="a").request("INVITE"), CALLER, 0.0)
    assert statuses(s.datagrams()) == [488]  # no offer
    video = OFFER.replace(b"m=audio 49170 RTP/AVP 0 8 101", b"m=audio 49170 RTP/AVP 18")
    s.receive(Caller(call_id="b").request("INVITE", body=video), CALLER, 0.0)
    (rejected,) = responses(s.datagrams())
    assert rejected.status == 488
    assert "305" in (rejected.header("Warning") or "")
    s.receive(Caller(call_id="c").request("INVITE", body=b"v=1\r\n"), CALLER, 0.0)
    assert statuses(s.datagrams()) == [400]
    s.receive(
        Caller(call_id="d").invite(extra=(("Require", "100rel"),)),
        CALLER,
        0.0,
    )
    (bad_ext,) = responses(s.datagrams())
    assert bad_ext.status == 420
    assert bad_ext.header("Unsupported") == "100rel"
    tel = Caller(call_id="e").invite().replace(b"INVITE sip:bot@", b"INVITE tel:+1555@", 1)
    s.receive(tel, CALLER, 0.0)
    assert statuses(s.datagrams()) == [416]
    plain = Caller(call_id="f").invite().replace(b"application/sdp", b"text/plain")
    s.receive(plain, CALLER, 0.0)
    assert statuses(s.datagrams()) == [415]
    assert s.events() == []
    assert s.calls == 0
    assert s.errors["sdp_no_common_codec"] == 1
    assert s.errors["sdp_bad_version"] == 1


def test_unknown_dialog_is_481() -> None:
    s = server()
    s.receive(Caller(to_tag="nope").request("BYE"), CALLER, 0.0)
    s.receive(Caller(to_tag="nope").invite(), CALLER, 0.0)
    assert statuses(s.datagrams()) == [481, 481]


def test_responses_follow_received_and_rport() -> None:
    s = server()
    nat = ("198.51.100.7", 40123)
    s.receive(Caller().request("OPTIONS", rport=True), nat, 0.0)
    ((wire, dest),) = s.datagrams()
    assert dest == nat
    via = parse_message(wire).vias[0]
    assert via.params["received"] == nat[0]
    assert via.params["rport"] == str(nat[1])
    s.receive(Caller().request("OPTIONS"), nat, 0.0)
    ((wire, dest),) = s.datagrams()
    assert dest == (nat[0], CALLER[1])  # the sent-by port at the received address


def test_max_calls_and_max_transactions() -> None:
    s = server(max_calls=1, max_transactions=3)
    incoming(s, Caller(call_id="one"))
    s.receive(Caller(call_id="two").invite(), CALLER, 0.0)
    assert statuses(s.datagrams()) == [503]
    s.receive(Caller(call_id="three").request("OPTIONS"), CALLER, 0.0)
    assert statuses(s.datagrams()) == [200]
    s.receive(Caller(call_id="four").request("OPTIONS"), CALLER, 0.0)
    assert s.datagrams() == []
    assert s.counters["overload"] == 1


def test_malformed_datagrams_are_counted_and_unanswered() -> None:
    s = server()
    for junk in (b"hello", b"INVITE sip:x SIP/2.0\r\n\r\n", b"\x00" * 50, b"\r\n\r\n"):
        s.receive(junk, CALLER, 0.0)
    assert s.datagrams() == []
    assert s.events() == []
    assert sum(s.errors.values()) == 3


_MUTATIONS = [
    (b"CSeq: 1", b"CSeq: 2"),
    (b"tag=caller-tag", b"tag=other"),
    (b"Contact: <sip:alice@192.0.2.9:5062>", b"Contact: <sip:alice@192.0.2.9:5062"),
    (b"Contact: <sip:alice@192.0.2.9:5062>", b"Record-Route: <sip:p1;lr>, <broken"),
    (b"Call-ID: ", b"Call-ID: x"),
    (b"m=audio 49170", b"m=audio 0"),
    (b"RTP/AVP 0 8 101", b"RTP/AVP 200"),
    (b"SIP/2.0/UDP", b"SIP/2.0/TCP"),
    (b"z9hG4bK", b"oldbranch"),
    (b"\r\n\r\n", b"\r\nRequire: timer\r\n\r\n"),
]


@st.composite
def _traffic(draw: st.DrawFn) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    now = 0.0
    for _ in range(draw(st.integers(1, 25))):
        caller = Caller(
            call_id=f"c{draw(st.integers(0, 3))}", to_tag=draw(st.sampled_from(["", "x"]))
        )
        method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "FOO"]))
        branch = draw(st.sampled_from(["z9hG4bK-a", "z9hG4bK-b", "z9hG4bK-c"]))
        wire = (
            caller.invite(branch=branch)
            if method == "INVITE"
            else caller.request(method, branch=branch)
        )
        for old, new in draw(st.lists(st.sampled_from(_MUTATIONS), max_size=3)):
            wire = wire.replace(old, new, 1)
        now += draw(st.floats(0, 5))
        out.append((now, wire[: draw(st.integers(10, len(wire)))] if draw(st.booleans()) else wire))
    return out


@settings(max_examples=100, deadline=None)
@given(_traffic(), st.lists(st.sampled_from(["ring", "answer", "reject", "hangup"]), max_size=6))
def test_fuzz_the_server_never_raises_and_forgets_everything_in_the_end(
    traffic: list[tuple[float, bytes]], actions: list[str]
) -> None:
    s = server(max_calls=3, max_transactions=50)
    now = 0.0
    handles: list[str] = []
    for now, wire in traffic:
        s.handle_timer(now)
        s.receive(wire, CALLER, now)
        handles += [e.handle for e in s.events() if isinstance(e, IncomingCall)]
        s.datagrams()
        for action in actions[:1]:
            for handle in list(handles):
                if handle not in s._dialogs:
                    continue
                if action == "ring":
                    s.ring(handle)
                elif action == "answer" and s._dialogs[handle].invite.final is None:
                    s.answer(handle, SERVER[0], 40000, now)
                elif action == "reject":
                    s.reject(handle, 486, now)
                else:
                    s.hangup(handle, now)
        actions = actions[1:]
        assert s.calls <= 3
        assert s.transactions <= 50
    for handle in handles:
        s.hangup(handle, now)
    run_timers(s, now + 1000.0)
    assert s.transactions == 0
    assert s.get_timer() is None


def test_over_tcp_responses_go_to_the_connection_and_only_the_200_is_retransmitted() -> None:
    s = server(transport="TCP")
    nat = ("198.51.100.7", 40123)  # the connection's peer, not the Via's sent-by
    caller = Caller()
    s.receive(caller.invite(), nat, 0.0)
    ((_, dest),) = s.datagrams()
    assert dest == nat
    (call,) = s.events()
    assert isinstance(call, IncomingCall)
    s.answer(call.handle, SERVER[0], 40000, 0.0)
    (ok,) = responses(s.datagrams())
    assert ok.header("Contact") == f"<sip:{SERVER[0]}:{SERVER[1]};transport=tcp>"
    assert [w for w, _ in run_timers(s, 2.0)] == [0.5, 1.5]  # section 13.3.1.4 still applies
    caller.to_tag = ok.to.tag
    s.receive(caller.ack(), nat, 2.0)
    s.hangup(call.handle, 3.0)
    ((wire, dest),) = s.datagrams()
    bye = parse_message(wire)
    assert dest == nat  # on the dialog's connection
    assert bye.vias[0].transport == "TCP"
    assert run_timers(s, 3.0 + 64 * T1 - 0.01) == []  # no Timer E over TCP
    # a rejected INVITE: no Timer G; Timers I and J are zero
    s.receive(Caller(call_id="c2").request("INVITE"), nat, 40.0)
    assert statuses(s.datagrams()) == [488]
    s.receive(Caller(call_id="c3").request("OPTIONS"), nat, 40.0)
    assert statuses(s.datagrams()) == [200]
    assert run_timers(s, 40.0 + 64 * T1) == []
    assert s.transactions == 0
