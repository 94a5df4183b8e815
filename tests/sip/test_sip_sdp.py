"""SDP offer/answer (RFC 3264 section 6) for one audio stream."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxwire.errors import SdpError
from voxwire.sip.sdp import answer_offer, parse_sdp

HEAD = "v=0\r\no=- 7 7 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"


def offer(*media: str) -> bytes:
    return (HEAD + "".join(media)).encode()


def test_the_offerers_order_payload_types_and_ptime_are_kept() -> None:
    sdp = offer(
        "m=audio 5004 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
        "a=fmtp:96 0-16\r\na=ptime:10\r\na=sendrecv\r\n"
    )
    answer = answer_offer(parse_sdp(sdp))
    assert (answer.codec, answer.payload_type, answer.telephone_event) == ("pcma", 8, 96)
    assert answer.ptime == 10
    assert answer.remote == ("192.0.2.9", 5004)
    body = answer.render("192.0.2.1", 40000, session_id=1).decode()
    assert "m=audio 40000 RTP/AVP 8 96\r\n" in body
    assert "a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n" in body
    assert "a=ptime:10\r\n" in body
    # our preference does not reorder the offer's
    assert answer_offer(parse_sdp(sdp), ("pcmu",)).codec == "pcmu"


def test_opus_keeps_its_dynamic_type_and_asks_for_in_band_fec() -> None:
    sdp = offer(
        "m=audio 5004 RTP/AVP 109 9 0 101 102\r\na=rtpmap:109 opus/48000/2\r\n"
        "a=fmtp:109 useinbandfec=1;maxplaybackrate=16000\r\n"
        "a=rtpmap:101 telephone-event/48000\r\na=rtpmap:102 telephone-event/8000\r\n"
        "a=ptime:20\r\n"
    )
    answer = answer_offer(parse_sdp(sdp), ("opus", "pcmu"))
    assert (answer.codec, answer.payload_type, answer.clock_rate) == ("opus", 109, 48000)
    assert answer.telephone_event == 101  # the event type at Opus's clock rate
    body = answer.render("192.0.2.1", 40000, session_id=1).decode()
    assert "m=audio 40000 RTP/AVP 109 101\r\n" in body
    assert "a=rtpmap:109 opus/48000/2\r\na=fmtp:109 useinbandfec=1\r\n" in body
    # without Opus allowed, the next offered codec voxwire takes (9 is G.722: skipped)
    fallback = answer_offer(parse_sdp(sdp), ("pcmu", "pcma"))
    assert (fallback.codec, fallback.payload_type, fallback.telephone_event) == ("pcmu", 0, 102)
    # opus must be opus/48000/2 (RFC 7587 section 7)
    mono = sdp.replace(b"opus/48000/2", b"opus/48000/1")
    assert answer_offer(parse_sdp(mono), ("opus", "pcmu")).codec == "pcmu"


def test_red_of_the_chosen_codec_is_kept_and_other_red_is_not() -> None:
    sdp = offer(
        "m=audio 5004 RTP/AVP 111 63 101\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n"
        "a=rtpmap:101 telephone-event/48000\r\n"
    )
    answer = answer_offer(parse_sdp(sdp), ("opus",))
    assert (answer.payload_type, answer.red, answer.telephone_event) == (111, 63, 101)
    body = answer.render("192.0.2.1", 40000, session_id=1).decode()
    assert "m=audio 40000 RTP/AVP 111 63 101\r\n" in body
    assert "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n" in body
    # G.711 with RED at 8 kHz
    g711 = offer("m=audio 5004 RTP/AVP 0 99\r\na=rtpmap:99 red/8000\r\na=fmtp:99 0/0/0\r\n")
    answer = answer_offer(parse_sdp(g711))
    assert (answer.codec, answer.red) == ("pcmu", 99)
    body = answer.render("192.0.2.1", 40000, session_id=1).decode()
    # the answer names its own blocks: one redundant copy of PCMU
    assert "m=audio 40000 RTP/AVP 0 99\r\na=rtpmap:0 PCMU/8000\r\n" in body
    assert "a=rtpmap:99 red/8000\r\na=fmtp:99 0/0\r\n" in body
    # RED of another codec, of mixed codecs, without fmtp, or not in the m-line: no RED
    for red in (
        "m=audio 5004 RTP/AVP 0 99\r\na=rtpmap:99 red/8000\r\na=fmtp:99 8/8\r\n",
        "m=audio 5004 RTP/AVP 0 99\r\na=rtpmap:99 red/8000\r\na=fmtp:99 0/8\r\n",
        "m=audio 5004 RTP/AVP 0 99\r\na=rtpmap:99 red/8000\r\n",
        "m=audio 5004 RTP/AVP 0\r\na=rtpmap:99 red/8000\r\na=fmtp:99 0/0\r\n",
    ):
        assert answer_offer(parse_sdp(offer(red))).red is None, red


def test_every_other_stream_is_rejected_with_port_0() -> None:
    sdp = offer(
        "m=video 6000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
        "m=audio 0 RTP/AVP 0\r\n",
        "m=audio 6002 RTP/SAVP 0\r\n",
        "m=audio 6004 RTP/AVP 0\r\nc=IN IP4 198.51.100.3\r\n",
        "m=audio 6006 RTP/AVP 0\r\n",
    )
    answer = answer_offer(parse_sdp(sdp))
    assert answer.index == 3
    assert answer.remote == ("198.51.100.3", 6004)  # the media-level c= wins
    back = parse_sdp(answer.render("192.0.2.1", 40000, session_id=1))
    assert [(m.media, m.port, m.proto) for m in back.media] == [
        ("video", 0, "RTP/AVP"),
        ("audio", 0, "RTP/AVP"),
        ("audio", 0, "RTP/SAVP"),
        ("audio", 40000, "RTP/AVP"),
        ("audio", 0, "RTP/AVP"),
    ]
    assert back.media[0].formats == ["96"]


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_the_direction_is_mirrored(offered: str, answered: str) -> None:
    answer = answer_offer(parse_sdp(offer(f"m=audio 5004 RTP/AVP 0\r\na={offered}\r\n")))
    assert answer.direction == answered
    session_level = offer("m=audio 5004 RTP/AVP 0\r\n").replace(
        b"t=0 0\r\n", f"t=0 0\r\na={offered}\r\n".encode()
    )
    assert answer_offer(parse_sdp(session_level)).direction == answered


def test_nothing_to_take_is_no_common_codec() -> None:
    for sdp in (
        offer("m=audio 5004 RTP/AVP 18 9\r\n"),
        offer("m=audio 5004 RTP/AVP 0\r\n").replace(b"RTP/AVP 0", b"RTP/AVP 96")
        + b"a=rtpmap:96 PCMU/16000\r\n",
        offer("m=video 5004 RTP/AVP 0\r\n"),
    ):
        with pytest.raises(SdpError) as info:
            answer_offer(parse_sdp(sdp))
        assert info.value.reason == "no_common_codec"
    with pytest.raises(SdpError) as info:
        answer_offer(parse_sdp(offer()))
    assert info.value.reason == "no_media"
    no_c = offer("m=audio 5004 RTP/AVP 0\r\n").replace(b"c=IN IP4 192.0.2.9\r\n", b"")
    with pytest.raises(SdpError) as info:
        answer_offer(parse_sdp(no_c))
    assert info.value.reason == "no_connection"


@pytest.mark.parametrize(
    ("sdp", "reason"),
    [
        (b"", "bad_version"),
        (b"v=1\r\n", "bad_version"),
        (b"v=0\r\nhello\r\n", "bad_line"),
        (b"v=0\r\ns=-\r\n", "bad_origin"),
        (b"v=0\r\no=- 1\r\n", "bad_origin"),
        (offer("m=audio\r\n"), "bad_media"),
        (offer("m=audio 99999 RTP/AVP 0\r\n"), "bad_media"),
        (offer("m=audio 5004 RTP/AVP 0\r\na=rtpmap:x PCMU\r\n"), "bad_line"),
        (
            HEAD.replace("IN IP4 192.0.2.9\r\nt", "IN IP4 host.example\r\nt").encode(),
            "bad_connection",
        ),
        (HEAD.replace("c=IN IP4", "c=XX IP4").encode(), "bad_connection"),
        (offer("m=audio 5004 RTP/AVP 0\r\n") + b"\x00", "nul_byte"),
        (b"v=0\r\n" + b"a=x\r\n" * 300 + b"o=- 1 1 IN IP4 1.2.3.4\r\n", "too_many_attributes"),
        (offer(*["m=audio 5004 RTP/AVP 0\r\n"] * 17), "too_many_media"),
        (offer("m=audio 5004 RTP/AVP " + " ".join(["0"] * 65) + "\r\n"), "too_many_formats"),
        (b"v=0\r\n" + b"x" * 17000, "too_large"),
        (b"v=0\r\n\xff\r\n", "bad_line"),
    ],
)
def test_malformed(sdp: bytes, reason: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(sdp)
    assert info.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=2000),
    st.sampled_from([b"", HEAD.encode(), offer("m=audio 1 RTP/AVP 0\r\n")]),
)
def test_fuzz_only_sdp_errors(noise: bytes, prefix: bytes) -> None:
    with contextlib.suppress(SdpError):
        answer_offer(parse_sdp(prefix + noise))
