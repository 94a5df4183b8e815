"""A blind transfer of an answered call by the server (SipServer.refer, RFC 3515), with the
caller scripted on a virtual clock."""

from __future__ import annotations

import pytest

from tests.sip.test_sip_uas import answered, run_timers, server
from tests.sip.uac import CALLER, Caller, requests, statuses
from voxwire.sip.message import Response
from voxwire.sip.uas import CallConfirmed, CallTransfer, SipServer


def confirmed(s: SipServer, caller: Caller) -> str:
    call = answered(s, caller)
    s.receive(caller.ack(), CALLER, 0.1)
    assert s.events() == [CallConfirmed(call.handle)]
    return call.handle


def response_to(wire_request: bytes, status: int) -> bytes:
    from voxwire.sip.message import parse_message

    request = parse_message(wire_request)
    headers = [(n, v) for n, v in request.headers if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    return Response(status, "X", headers).encode()


def notify(caller: Caller, cseq: int, body: bytes, state: str, event: str = "refer") -> bytes:
    return caller.request(
        "NOTIFY",
        cseq=cseq,
        extra=(
            ("Event", event),
            ("Subscription-State", state),
            ("Content-Type", "message/sipfrag"),
        ),
    ).replace(b"Content-Length: 0\r\n\r\n", f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def test_refer_202_and_notifies_are_reported_and_answered() -> None:
    s = server()
    caller = Caller()
    handle = confirmed(s, caller)
    s.refer(handle, "sip:human@192.0.2.50", 1.0)
    [(wire, dest)] = s.datagrams()
    [refer] = requests([(wire, dest)])
    assert refer.method == "REFER"
    assert refer.header("Refer-To") == "<sip:human@192.0.2.50>"
    assert refer.to.tag == caller.from_tag
    assert dest == CALLER
    with pytest.raises(RuntimeError):
        s.refer(handle, "sip:other@192.0.2.50", 1.0)
    s.receive(response_to(wire, 202), CALLER, 1.1)
    assert s.events() == [CallTransfer(handle, 202, False)]
    s.receive(notify(caller, 2, b"SIP/2.0 100 Trying\r\n", "active"), CALLER, 1.2)
    s.receive(notify(caller, 3, b"SIP/2.0 200 OK\r\n", "terminated"), CALLER, 1.3)
    assert statuses(s.datagrams()) == [200, 200]
    assert s.events() == [CallTransfer(handle, 100, False), CallTransfer(handle, 200, True)]
    s.receive(notify(caller, 4, b"SIP/2.0 200 OK\r\n", "terminated"), CALLER, 1.4)
    assert statuses(s.datagrams()) == [200]
    assert s.events() == []  # a late NOTIFY changes nothing


def test_a_notify_of_another_event_is_489_and_outside_a_transfer_405() -> None:
    s = server()
    caller = Caller()
    handle = confirmed(s, caller)
    s.receive(notify(caller, 2, b"SIP/2.0 200 OK\r\n", "active"), CALLER, 0.5)
    assert statuses(s.datagrams()) == [405]
    s.refer(handle, "sip:human@192.0.2.50", 1.0)
    s.datagrams()
    s.receive(notify(caller, 3, b"", "active", event="presence"), CALLER, 1.1)
    assert statuses(s.datagrams()) == [489]


def test_a_refused_refer_and_a_refer_without_response_end_the_transfer() -> None:
    s = server()
    caller = Caller()
    handle = confirmed(s, caller)
    s.refer(handle, "sip:human@192.0.2.50", 1.0)
    [(wire, _)] = s.datagrams()
    s.receive(response_to(wire, 603), CALLER, 1.1)
    assert s.events() == [CallTransfer(handle, 603, True)]
    s.refer(handle, "sip:human@192.0.2.50", 2.0)
    [(first, _)] = s.datagrams()
    sent = run_timers(s, 2.0 + 64 * 0.5)
    assert [when - 2.0 for when, _ in sent] == [
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    assert all(wire == first for _, wire in sent)
    assert s.events() == [CallTransfer(handle, 408, True)]
    assert s.counters["refer_timeout"] == 1
