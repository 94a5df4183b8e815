"""The SIP parser: the RFC 3261 syntax it takes, every limit it enforces, and hostile input
fuzzed with hypothesis (no exception but SipParseError, bounded time and memory)."""

from __future__ import annotations

import contextlib
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxwire.errors import SipParseError
from voxwire.sip.message import (
    Limits,
    Request,
    Response,
    message_length,
    parse_message,
    parse_name_addr,
    parse_via,
    split_values,
)

BASE = (
    "INVITE sip:bot@192.0.2.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.9:5062;branch=z9hG4bKabc\r\n"
    "Max-Forwards: 70\r\n"
    'From: "A, B" <sip:alice@192.0.2.9>;tag=1\r\n'
    "To: <sip:bot@192.0.2.1>\r\n"
    "Call-ID: x1@192.0.2.9\r\n"
    "CSeq: 7 INVITE\r\n"
)


def msg(extra: str = "", body: bytes = b"", length: str | None = None) -> bytes:
    head = BASE + extra
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode() + body


def reason(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(SipParseError) as info:
        parse_message(data) if limits is None else parse_message(data, limits)
    return info.value.reason


def test_a_request_with_compact_forms_folding_and_multiple_vias() -> None:
    data = (
        b"INVITE sip:bot@192.0.2.1;transport=udp SIP/2.0\r\n"
        b"v: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK1;received=192.0.2.20,\r\n"
        b"   SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bK2\r\n"
        b"VIA: SIP/2.0/UDP 192.0.2.9 ; branch=z9hG4bK3\r\n"
        b"f: Alice <sip:alice@192.0.2.9>;tag=aa\r\n"
        b"t: sip:bot@192.0.2.1\r\n"
        b"i: f81d4fae\r\n"
        b"cseq: 4711   INVITE\r\n"
        b"Subject: a long\r\n\tfolded subject\r\n"
        b"c: application/sdp\r\n"
        b"l: 4\r\n\r\nv=0\r\nthe rest is discarded"
    )
    m = parse_message(data)
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    vias = m.vias
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "proxy.example.com", None, "z9hG4bK1"),
        ("TCP", "[2001:db8::9]", 5070, "z9hG4bK2"),
        ("UDP", "192.0.2.9", None, "z9hG4bK3"),
    ]
    assert vias[0].params["received"] == "192.0.2.20"
    assert m.from_.display == "Alice"
    assert m.from_.tag == "aa"
    assert m.to.uri == "sip:bot@192.0.2.1"
    assert m.to.tag == ""
    assert m.call_id == "f81d4fae"
    assert m.cseq == (4711, "INVITE")
    assert m.header("subject") == "a long folded subject"
    assert m.header("Content-Type") == "application/sdp"
    assert m.body == b"v=0\r"  # section 18.3: bytes past Content-Length are dropped


def test_a_response_and_the_serializer_round_trip() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
        b"From: <sip:bot@192.0.2.1>;tag=ab\r\nTo: <sip:alice@192.0.2.9>;tag=cd\r\n"
        b"Call-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    m = parse_message(data)
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (180, "Ringing")
    again = parse_message(m.encode())
    assert isinstance(again, Response)
    assert again.headers == m.headers
    r = Request("OPTIONS", "sip:x@192.0.2.1", [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")], b"abc")
    assert r.encode().endswith(b"Content-Length: 3\r\n\r\nabc")


def test_addresses_and_splitting() -> None:
    assert split_values('"a, b" <sip:x@h>;p=1, <sip:y@h,z>') == [
        '"a, b" <sip:x@h>;p=1',
        "<sip:y@h,z>",
    ]
    a = parse_name_addr("sip:alice@h;tag=9")
    assert (a.uri, a.tag) == ("sip:alice@h", "9")
    b = parse_name_addr('"Bob" <sip:bob@h;transport=tcp>;tag=7;expires=60')
    assert (b.uri, b.display, b.params) == (
        "sip:bob@h;transport=tcp",
        "Bob",
        {"tag": "7", "expires": "60"},
    )
    assert parse_via("SIP/2.0/UDP h:5060;rport;branch=z9hG4bK9").params == {
        "rport": "",
        "branch": "z9hG4bK9",
    }
    for bad in ("<sip:x@h", "nothing", "<sip:x@h> junk"):
        with pytest.raises(SipParseError) as info:
            parse_name_addr(bad)
        assert info.value.reason == "bad_address"
    for bad in ("SIP/3.0/UDP h", "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h junk"):
        with pytest.raises(SipParseError) as info:
            parse_via(bad)
        assert info.value.reason == "bad_via"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "no_header_end"),
        (b"INVITE sip:x SIP/2.0\r\nVia: x", "no_header_end"),
        (msg().replace(b"Call-ID", b"Call\x00ID"), "nul_byte"),
        (msg().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n"), "bare_cr_lf"),
        (msg().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), "bad_start_line"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "bad_start_line"),
        (msg().replace(b"Call-ID: x1@192.0.2.9\r\n", b""), "missing_header"),
        (msg().replace(b"CSeq: 7 INVITE", b"CSeq: 7 BYE"), "bad_cseq"),
        (msg().replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE"), "bad_cseq"),
        (msg().replace(b"Max-Forwards: 70", b"Bad Header: 1"), "bad_header"),
        (msg().replace(b"Max-Forwards: 70", b"NoColon"), "bad_header"),
        (msg("", b"x", "-1"), "bad_content_length"),
        (msg("", b"x", "1x"), "bad_content_length"),
        (msg("Content-Length: 2\r\n", b"xx", "1"), "bad_content_length"),
        (msg("", b"short", "50"), "truncated_body"),
        (msg("", b"", "99999999999"), "bad_content_length"),
        (
            msg().replace(b"Via: SIP/2.0/UDP 192.0.2.9:5062", b"Via: SIP/2.0/UDP 192.0.2.9:0"),
            "bad_via",
        ),
        (msg().replace(b"Call-ID: x1@192.0.2.9", b"Call-ID: a b"), "bad_call_id"),
        (msg().replace(b"To: <sip:bot@192.0.2.1>", b"To: <sip:bot@192.0.2.1"), "bad_address"),
        (msg().replace(b"Max-Forwards: 70", "Subject: \xff".encode("latin-1")), "bad_encoding"),
    ],
)
def test_malformed_messages(data: bytes, expected: str) -> None:
    assert reason(data) == expected


def test_a_folded_line_before_any_header() -> None:
    data = (
        b"OPTIONS sip:x@h SIP/2.0\r\n folded\r\n"
        + msg()[len(b"INVITE sip:bot@192.0.2.1 SIP/2.0\r\n") :]
    )
    assert reason(data) == "bad_folding"


def test_limits() -> None:
    small = Limits(
        max_message=2000, max_line=200, max_headers=12, max_vias=3, max_values=4, max_body=10
    )
    assert reason(msg("X: " + "a" * 300 + "\r\n"), small) == "line_too_long"
    assert reason(msg("X: a\r\n" + " b\r\n" * 100), small) == "line_too_long"  # unfolded length
    assert reason(msg("".join(f"X-{i}: v\r\n" for i in range(7))), small) == "too_many_headers"
    vias = "Via: SIP/2.0/UDP h;branch=z9hG4bK1, SIP/2.0/UDP h;branch=z9hG4bK2\r\n" * 2
    assert reason(msg(vias), small) == "too_many_vias"
    assert (
        reason(msg("Route: <sip:a>, <sip:b>, <sip:c>, <sip:d>, <sip:e>\r\n"), small)
        == "too_many_values"
    )
    assert reason(msg("", b"x" * 11, "11"), small) == "body_too_large"
    assert reason(msg("", b"x" * 11), small) == "body_too_large"
    assert reason(msg("", b"x" * 3000), small) == "too_large"
    parse_message(msg("", b"x" * 10, "10"), small)  # at the limits: fine


def test_stream_framing() -> None:
    one = msg("", b"abcd", "4")
    assert message_length(b"\r\n" + one + one[:10]) == 2 + len(one)
    assert message_length(one[:-1]) is None
    assert message_length(one[:20]) is None
    with pytest.raises(SipParseError) as info:
        message_length(msg())
    assert info.value.reason == "bad_content_length"
    with pytest.raises(SipParseError) as info:
        message_length(b"x" * 70000)
    assert info.value.reason == "too_large"


# --- fuzzing -------------------------------------------------------------------------

_PIECES = [
    "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
    "Via: SIP/2.0/UDP h;branch=z9hG4bK1," * 50,
    "Content-Length: 5",
    "Content-Length: -3",
    "Content-Length: 99999999999999999999",
    "l: 0",
    " folded continuation",
    "\tfolded",
    "X: " + "a" * 9000,
    "Route: " + "<sip:r>," * 200,
    "CSeq: 1 INVITE",
    "CSeq: 99999999999 INVITE",
    "From: <sip:a@h>;tag=1",
    "To: <sip:b@h",
    "Call-ID: c",
    "\x00",
    "\r",
    "",
    ":",
    'From: "unterminated <sip:a@h>',
]


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    start = draw(
        st.sampled_from(["INVITE sip:b@h SIP/2.0", "SIP/2.0 200 OK", "BYE x SIP/2.0", "junk"])
    )
    lines = draw(st.lists(st.sampled_from(_PIECES), max_size=40))
    repeat = draw(st.integers(min_value=1, max_value=2000))
    vias = ["Via: SIP/2.0/UDP h;branch=z9hG4bK" + str(i) for i in range(repeat)]
    noise = draw(st.binary(max_size=200))
    cut = draw(st.integers(min_value=0, max_value=5000))
    text = "\r\n".join([start, *lines, *(vias if draw(st.booleans()) else [])]) + "\r\n\r\n"
    data = text.encode("utf-8", "surrogatepass") + noise
    return data[: max(cut, 1) * 40] if draw(st.booleans()) else data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile())
def test_fuzz_hostile_messages_only_raise_sip_parse_error(data: bytes) -> None:
    try:
        m = parse_message(data)
    except SipParseError:
        return
    assert len(m.vias) <= Limits().max_vias
    assert len(m.headers) <= Limits().max_headers
    parse_message(m.encode())  # what parsed serializes to something that parses


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes(data: bytes) -> None:
    for candidate in (data, BASE.encode() + data, msg() + data):
        with contextlib.suppress(SipParseError):
            parse_message(candidate)
        with contextlib.suppress(SipParseError):
            message_length(candidate)


def test_memory_stays_bounded_for_the_worst_datagrams() -> None:
    worst = [
        msg("Via: " + ", ".join(f"SIP/2.0/UDP h;branch=z9hG4bK{i}" for i in range(1800)) + "\r\n"),
        msg("".join("X: " + "a" * 500 + "\r\n" for i in range(120))),
        msg("X: a\r\n" + " " + "b" * 60 + "\r\n" * 1),
        (BASE + "\r\n").encode() * 300,
        msg("Route: " + "<sip:r>," * 8000 + "\r\n"),
    ]
    tracemalloc.start()
    try:
        for data in worst:
            data = data[:65535]
            with contextlib.suppress(SipParseError):
                parse_message(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a 64 KiB datagram never costs more than a small multiple of itself
    assert peak < 2_000_000, peak
